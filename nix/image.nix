# OCI image: `nix build .#image && ./result | docker load`. Runs the agent in
# embedded mode by default, config at /etc/s3rf/agent.toml, state in /var/lib/s3rf.
{
  dockerTools,
  s3rf-agent,
  s3rf-filters,
  cacert,
}:
dockerTools.streamLayeredImage {
  name = "s3rf-agent";
  tag = "latest";
  contents = [s3rf-agent s3rf-filters cacert];
  fakeRootCommands = ''
    mkdir -p ./etc/s3rf/filters ./var/lib/s3rf ./tmp
    chown 65534:65534 ./var/lib/s3rf
    chmod 1777 ./tmp
  '';
  config = {
    Entrypoint = ["${s3rf-agent}/bin/s3rf-agent"];
    Cmd = ["--config" "/etc/s3rf/agent.toml" "run"];
    Env = [
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
      "STATE_DIRECTORY=/var/lib/s3rf"
      "S3RF_LOG__FORMAT=json"
    ];
    Volumes = {"/var/lib/s3rf" = {};};
    User = "65534:65534";
  };
}
