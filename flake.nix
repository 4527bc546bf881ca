{
  description = "s3rf: copy objects between S3-compatible stores, driven by NATS JetStream";

  # Pinned to a nixpkgs revision with Rust 1.95 (rust-toolchain.toml's), so
  # `nix flake check`'s clippy and the build use the compiler CI uses, on any
  # day. No flake.lock is committed (the machines that build s3rf's CI cannot
  # reach GitHub); the first `nix build` writes one for this revision. Move
  # the pin together with rust-toolchain.toml.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/fc3f2e72c142be53877d3f728f949330811bc7dd";

  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    systems = ["x86_64-linux" "aarch64-linux"];
    forAll = f:
      lib.genAttrs systems (system:
        f (import nixpkgs {
          inherit system;
          overlays = [self.overlays.default];
        }));
  in {
    overlays.default = final: _prev: {
      s3rf-agent = final.callPackage ./nix/package.nix {};
      s3rf-filters = final.callPackage ./nix/filters.nix {};
      s3s-fs = final.callPackage ./nix/s3s-fs.nix {};
    };

    packages = forAll (pkgs: {
      agent = pkgs.s3rf-agent;
      filters = pkgs.s3rf-filters;
      image = pkgs.callPackage ./nix/image.nix {};
      demo = pkgs.callPackage ./nix/demo.nix {src = self;};
      default = pkgs.s3rf-agent;
    });

    apps = forAll (pkgs: let
      system = pkgs.stdenv.hostPlatform.system;
    in rec {
      agent = {
        type = "app";
        program = "${self.packages.${system}.agent}/bin/s3rf-agent";
      };
      demo = {
        type = "app";
        program = "${self.packages.${system}.demo}/bin/s3rf-demo";
      };
      default = agent;
    });

    devShells = forAll (pkgs: {
      default = pkgs.mkShell {
        # rustup reads rust-toolchain.toml (Rust 1.95 with the wasm32 target).
        packages = [
          pkgs.rustup
          pkgs.nats-server
          pkgs.natscli
          pkgs.awscli2
          pkgs.s3s-fs
          (pkgs.python3.withPackages (ps: [ps.moto ps.boto3] ++ ps.moto.optional-dependencies.server))
          pkgs.wabt
          pkgs.deadnix
          pkgs.alejandra
        ];
      };
    });

    checks = forAll (pkgs: import ./nix/checks.nix {inherit pkgs self;});

    nixosModules.default = import ./nix/module.nix;

    formatter = forAll (pkgs: pkgs.alejandra);
  };
}
