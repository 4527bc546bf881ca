# NixOS VM test of services.s3rf-agent: s3s-fs as the store (a bucket is a
# directory, an object a file), the agent in embedded mode with a filter from
# the filters package and a secret passed as a systemd credential; a
# migration through the module's `s3rf-agent` wrapper must copy what the
# filter keeps.
#
# Node rules that nixpkgs enforces and the offline stub checks too:
# `nixpkgs.*` is read-only under testers.runNixOSTest
# (nixos/modules/misc/nixpkgs/read-only.nix), so packages come from `self`,
# not from an overlay; and nothing insecure (MinIO is marked so).
{self}: {
  name = "s3rf-agent";
  nodes.machine = {pkgs, ...}: let
    system = pkgs.stdenv.hostPlatform.system;
    s3s-fs = pkgs.callPackage ./s3s-fs.nix {};
  in {
    imports = [self.nixosModules.default];
    systemd.services.s3s-fs = {
      wantedBy = ["multi-user.target"];
      before = ["s3rf-agent.service"];
      serviceConfig = {
        ExecStart = "${s3s-fs}/bin/s3s-fs --host 127.0.0.1 --port 9000 --access-key s3rf-test --secret-key s3rf-test-secret /var/lib/s3s";
        StateDirectory = "s3s";
      };
    };
    environment.etc."s3rf-test/secret".text = "s3rf-test-secret";
    environment.etc."s3rf-test/env".text = "S3_KEY=s3rf-test\n";
    services.s3rf-agent = {
      enable = true;
      package = self.packages.${system}.agent;
      settings = {
        endpoints.s3 = {
          url = "http://127.0.0.1:9000";
          path_style = true;
          access_key_id_env = "S3_KEY";
          secret_access_key_env = "S3_SECRET";
        };
        migrate.page_size = 10;
        metrics.listen = "127.0.0.1:9464";
      };
      environmentFile = "/etc/s3rf-test/env";
      credentials.S3_SECRET = "/etc/s3rf-test/secret";
      filters = [
        "${self.packages.${system}.filters}/lib/s3rf/filters/skip-glob.wasm"
        (pkgs.writeText "skip-glob.toml" ''patterns = ["**.tmp"]'')
      ];
    };
  };
  testScript = ''
    machine.wait_for_unit("s3s-fs.service")
    machine.wait_for_open_port(9000)
    machine.succeed("mkdir -p /var/lib/s3s/src /var/lib/s3s/dst")
    machine.succeed("echo hello > /var/lib/s3s/src/a.txt && echo tmp > /var/lib/s3s/src/b.tmp")
    machine.wait_for_unit("s3rf-agent.service")
    machine.succeed("curl -sf http://127.0.0.1:9464/readyz")
    machine.succeed(
      "S3_KEY=s3rf-test S3_SECRET=s3rf-test-secret "
      + "s3rf-agent migrate --src s3 --dst s3 --bucket src --map src=dst --wait"
    )
    machine.succeed("s3rf-agent status")
    machine.succeed("cmp /var/lib/s3s/src/a.txt /var/lib/s3s/dst/a.txt")
    machine.fail("test -e /var/lib/s3s/dst/b.tmp")
    machine.succeed("systemctl stop s3rf-agent.service")
  '';
}
