# `nix run .#demo`: the README quick start (.ci/demo) with every tool from
# nixpkgs instead of apt, pip and cargo.
{
  src,
  lib,
  writeShellApplication,
  s3rf-agent,
  s3rf-filters,
  s3s-fs,
  python3,
}:
writeShellApplication {
  name = "s3rf-demo";
  runtimeInputs = [
    s3rf-agent
    s3s-fs
    (python3.withPackages (ps: [ps.moto ps.boto3] ++ ps.moto.optional-dependencies.server))
  ];
  text = ''
    export S3RF_DEMO_PREBUILT=1
    export S3RF_DEMO_FILTERS=${s3rf-filters}/lib/s3rf/filters
    exec bash ${src}/.ci/demo "$@"
  '';
  meta.description = "Migrate sample data between two local S3 stores through s3rf with filters";
  meta.platforms = lib.platforms.linux;
}
