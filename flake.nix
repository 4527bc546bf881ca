{
  description = "s3rf: copy objects between S3-compatible stores, driven by NATS JetStream";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = {
    self,
    nixpkgs,
  }: let
    systems = ["x86_64-linux" "aarch64-linux"];
    forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
  in {
    packages = forAll (pkgs: rec {
      agent = pkgs.callPackage ./nix/package.nix {};
      default = agent;
    });
    apps = forAll (pkgs: rec {
      agent = {
        type = "app";
        program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.agent}/bin/s3rf-agent";
      };
      default = agent;
    });
  };
}
