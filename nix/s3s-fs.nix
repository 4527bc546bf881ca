# s3s-fs 0.14.1, the S3 server the integration tests use (not in nixpkgs).
# Its Cargo.lock is copied here so that the build needs no
# import-from-derivation.
{
  lib,
  rustPlatform,
  fetchCrate,
}:
rustPlatform.buildRustPackage rec {
  pname = "s3s-fs";
  version = "0.14.1";
  src = fetchCrate {
    inherit pname version;
    hash = "sha256-sCNMLBR7rGcKvm9bnXhBPdVSRxbBaWef/5SRsBQd4Y8=";
  };
  cargoLock.lockFile = ./s3s-fs.Cargo.lock;
  buildFeatures = ["binary"];
  doCheck = false;
  meta = {
    description = "An experimental S3 server based on file system";
    homepage = "https://github.com/Nugine/s3s";
    license = lib.licenses.asl20;
    mainProgram = "s3s-fs";
  };
}
