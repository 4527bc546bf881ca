# A stand-in for nixpkgs, for `nix flake check --no-build` on machines that
# cannot fetch nixpkgs (.ci/check-nix). It implements just the attributes
# s3rf's flake and NixOS module use, with the same names and shapes as
# nixpkgs, so that a typo, a missing attribute or a broken module fails
# evaluation. Nothing here can build.
{
  outputs = _: {lib = import ./lib.nix;};
}
