{
  lib,
  rustPlatform,
}:
rustPlatform.buildRustPackage {
  pname = "s3rf-agent";
  version = "0.1.0";
  src = lib.cleanSource ../.;
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = ["-p" "s3rf-agent"];
  # The integration tests need nats-server and S3 servers; run them with
  # `bash .ci/test` outside the sandbox.
  doCheck = false;
  postInstall = ''
    install -Dm644 systemd/s3rf-agent.service $out/lib/systemd/system/s3rf-agent.service
    substituteInPlace $out/lib/systemd/system/s3rf-agent.service \
      --replace-fail /usr/bin/s3rf-agent $out/bin/s3rf-agent
  '';
  meta = {
    description = "Copy objects between S3-compatible stores from NATS JetStream jobs";
    mainProgram = "s3rf-agent";
    license = lib.licenses.asl20;
  };
}
