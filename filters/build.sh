#!/usr/bin/env bash
# Builds every example filter for wasm32-unknown-unknown into filters/dist/
# (or the directory given as $1). Used by users, the tests, CI and Nix.
#   bash filters/build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/dist}
cd "$here"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    if command -v rustup >/dev/null; then
        rustup target add wasm32-unknown-unknown
    fi
fi
cargo build --quiet --release --locked --target wasm32-unknown-unknown
mkdir -p "$out"
for crate in skip-glob rename-prefix date-partition max-size; do
    cp "target/wasm32-unknown-unknown/release/${crate//-/_}.wasm" "$out/$crate.wasm"
done
# WAT2WASM=wat2wasm (e.g. wabt's, as Nix does) skips building our own converter.
if [ -n "${WAT2WASM:-}" ]; then
    "$WAT2WASM" examples/skip-empty-wat/skip-empty.wat -o "$out/skip-empty.wasm"
else
    host=$(rustc -vV | sed -n 's/^host: //p')
    cargo run --quiet --release --locked --manifest-path tools/wat2wasm/Cargo.toml \
        --target "$host" --target-dir "$here/target" -- \
        examples/skip-empty-wat/skip-empty.wat "$out/skip-empty.wasm"
fi
ls -l "$out"/*.wasm | awk '{print $5, $9}' >&2
