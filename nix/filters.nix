# The example filters, built for wasm32-unknown-unknown by filters/build.sh
# (nixpkgs' rustc ships the wasm32-unknown-unknown standard library); the WAT
# example is converted with wabt's wat2wasm. nixpkgs' rustc links wasm32 with
# `lld` instead of the `rust-lld` rustup ships
# (pkgs/development/compilers/rust/rustc.nix), so lld is a build input.
{
  lib,
  rustPlatform,
  wabt,
  lld,
}:
rustPlatform.buildRustPackage {
  pname = "s3rf-filters";
  version = "0.1.0";
  src = lib.cleanSource ../filters;
  cargoLock.lockFile = ../filters/Cargo.lock;
  nativeBuildInputs = [wabt lld];
  buildPhase = ''
    runHook preBuild
    WAT2WASM=wat2wasm bash build.sh dist
    runHook postBuild
  '';
  installPhase = ''
    runHook preInstall
    install -Dm644 -t $out/lib/s3rf/filters dist/*.wasm
    for ex in examples/*/; do
      install -Dm644 -t $out/share/doc/s3rf-filters/$(basename $ex) $ex/src/lib.rs 2>/dev/null || true
    done
    install -Dm644 -t $out/share/doc/s3rf-filters README.md ABI.md
    runHook postInstall
  '';
  doCheck = false;
  meta = {
    description = "Example s3rf Wasm filters (skip-glob, rename-prefix, date-partition, max-size, skip-empty)";
    license = lib.licenses.asl20;
  };
}
