# The agent: s3rf-agent with nats-server first on its PATH (for embedded
# mode) and the systemd units under lib/systemd/system.
{
  lib,
  rustPlatform,
  makeWrapper,
  nats-server,
  rust-jemalloc-sys,
}:
rustPlatform.buildRustPackage {
  pname = "s3rf-agent";
  version = "0.1.0";
  # Only what the build reads: editing README.md or ARCHITECTURE.md does not
  # rebuild the agent, and a `path:` flake never copies target/.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [../Cargo.toml ../Cargo.lock ../agent ../systemd];
  };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = ["-p" "s3rf-agent"];
  nativeBuildInputs = [makeWrapper];
  # The agent allocates with tikv-jemallocator. nixpkgs' jemalloc built with
  # tikv-jemalloc-sys's `_rjem_` prefix sets JEMALLOC_OVERRIDE, so the crate
  # links it instead of running jemalloc's configure and make in the build
  # (pkgs/by-name/ru/rust-jemalloc-sys/package.nix; ruff does the same).
  buildInputs = [rust-jemalloc-sys];
  # The integration tests need nats-server and S3 servers; checks.tests runs
  # them with the servers as inputs.
  doCheck = false;
  postInstall = ''
    # --prefix: nixpkgs' nats-server wins over an older one on the system
    # (Debian's 2.9 drops consumer settings s3rf needs).
    wrapProgram $out/bin/s3rf-agent --prefix PATH : ${lib.makeBinPath [nats-server]}
    for unit in s3rf-agent.service s3rf-agent@.service s3rf-bridge.service; do
      install -Dm644 systemd/$unit $out/lib/systemd/system/$unit
      substituteInPlace $out/lib/systemd/system/$unit \
        --replace-fail /usr/bin/s3rf-agent $out/bin/s3rf-agent \
        --replace-fail file:///usr/share/doc/s3rf/systemd.md file://$out/share/doc/s3rf/systemd.md
    done
    install -Dm644 systemd/agent.example.toml $out/share/s3rf/agent.example.toml
    install -Dm644 systemd/README.md $out/share/doc/s3rf/systemd.md
  '';
  meta = {
    description = "Copy objects between S3-compatible stores from NATS JetStream jobs";
    mainProgram = "s3rf-agent";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
  };
}
