# `nix flake check`: build, lints, the whole test suite against real servers
# (nats-server, moto, s3s-fs as inputs), and a NixOS VM test of the module.
{
  pkgs,
  self,
}: let
  inherit (pkgs) lib;
  agent = pkgs.s3rf-agent;
  # The tests also read the docs they keep true (README's config tables,
  # ARCHITECTURE's code map).
  testSrc = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [../Cargo.toml ../Cargo.lock ../agent ../systemd ../README.md ../ARCHITECTURE.md];
  };
  python = pkgs.python3.withPackages (ps: [ps.moto ps.boto3] ++ ps.moto.optional-dependencies.server);
  # The agent's derivation with another build phase and no output but a stamp.
  cargoRun = name: extraInputs: script:
    agent.overrideAttrs (old: {
      pname = "s3rf-${name}";
      src = testSrc;
      nativeBuildInputs = old.nativeBuildInputs ++ extraInputs;
      buildPhase = ''
        runHook preBuild
        ${script}
        runHook postBuild
      '';
      installPhase = "touch $out";
      doCheck = false;
      dontFixup = true;
    });
in {
  build = agent;
  filters = pkgs.s3rf-filters;
  fmt = cargoRun "fmt" [pkgs.rustfmt] "cargo fmt --all --check";
  clippy = cargoRun "clippy" [pkgs.clippy] "cargo clippy --workspace --all-targets --offline -- -D warnings";
  tests = cargoRun "tests" [pkgs.nats-server pkgs.s3s-fs python pkgs.s3rf-filters] ''
    export HOME=$TMPDIR
    export S3RF_TEST_BIN_DIR=${pkgs.nats-server}/bin
    export S3RF_TEST_FILTERS=${pkgs.s3rf-filters}/lib/s3rf/filters
    cargo test --workspace --offline
  '';
  vm = pkgs.testers.runNixOSTest (import ./vm-test.nix {inherit self;});
}
