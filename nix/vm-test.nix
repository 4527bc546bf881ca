# NixOS VM test of services.s3rf-agent: MinIO as both stores, the agent in
# embedded mode with a filter from the filters package and a secret passed as
# a systemd credential; a migration through the CLI must copy what the filter
# keeps.
{self}: {
  name = "s3rf-agent";
  nodes.machine = {pkgs, ...}: {
    imports = [self.nixosModules.default];
    nixpkgs.overlays = [self.overlays.default];
    environment.systemPackages = [pkgs.s3rf-agent pkgs.minio-client];
    services.minio = {
      enable = true;
      rootCredentialsFile = pkgs.writeText "minio-credentials" ''
        MINIO_ROOT_USER=minioadmin
        MINIO_ROOT_PASSWORD=minioadmin
      '';
    };
    environment.etc."s3rf-test/secret".text = "minioadmin";
    services.s3rf-agent = {
      enable = true;
      settings = {
        endpoints.minio = {
          url = "http://127.0.0.1:9000";
          path_style = true;
          access_key_id_env = "MINIO_KEY";
          secret_access_key_env = "MINIO_SECRET";
        };
        migrate.page_size = 10;
        metrics.listen = "127.0.0.1:9464";
      };
      environmentFile = "/etc/s3rf-test/env";
      credentials.MINIO_SECRET = "/etc/s3rf-test/secret";
      filters = [
        "${pkgs.s3rf-filters}/lib/s3rf/filters/skip-glob.wasm"
        (pkgs.writeText "skip-glob.toml" ''patterns = ["**.tmp"]'')
      ];
    };
    environment.etc."s3rf-test/env".text = "MINIO_KEY=minioadmin\n";
  };
  testScript = ''
    machine.wait_for_unit("minio.service")
    machine.wait_for_open_port(9000)
    machine.succeed("mc alias set local http://127.0.0.1:9000 minioadmin minioadmin")
    machine.succeed("mc mb local/src && mc mb local/dst")
    machine.succeed("echo hello > /tmp/a.txt && mc cp /tmp/a.txt local/src/a.txt && mc cp /tmp/a.txt local/src/b.tmp")
    machine.wait_for_unit("s3rf-agent.service")
    machine.succeed("curl -sf http://127.0.0.1:9464/readyz")
    machine.succeed(
      "MINIO_KEY=minioadmin MINIO_SECRET=minioadmin STATE_DIRECTORY=/var/lib/s3rf/agent "
      + "s3rf-agent --config $(systemctl show -p ExecStart s3rf-agent | grep -o '/nix/store/[^ ]*-checked.toml' | head -1) "
      + "migrate --src minio --dst minio --bucket src --map src=dst --wait"
    )
    machine.succeed("mc stat local/dst/a.txt")
    machine.fail("mc stat local/dst/b.tmp")
    machine.succeed("systemctl stop s3rf-agent.service")
  '';
}
