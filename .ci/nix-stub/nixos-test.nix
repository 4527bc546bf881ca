# A NixOS test, evaluated far enough to catch a broken module: each node's
# imported modules are called with a config assembled from the node's own
# settings over the module's option defaults, and every service the module
# defines is forced. The rules of nixpkgs it keeps (see README):
# - `nixpkgs.*` is read-only in a node of testers.runNixOSTest
#   (nixos/modules/misc/nixpkgs/read-only.nix);
# - option values must have the option's type (lib/types.nix);
# - an insecure package refuses to evaluate (pkgs/stdenv/generic/check-meta.nix),
#   so a node may not use one (the stub's minio is marked so, as nixpkgs' is).
{
  lib,
  test,
  drv,
  self,
}: let
  node = test.nodes.machine;
  nodeModule = node {pkgs = self;};
  sub = nodeModule.services.s3rf-agent;
  module = builtins.head nodeModule.imports;
  readOnly =
    if nodeModule ? nixpkgs
    then throw "The option `nixpkgs.${builtins.head (builtins.attrNames nodeModule.nixpkgs)}' is read-only in a node of testers.runNixOSTest (nixos/modules/misc/nixpkgs/read-only.nix); take packages from the flake's outputs instead of an overlay"
    else true;
  insecureServices =
    if nodeModule.services.minio.enable or false
    then builtins.seq self.minio true
    else true;
  defaults = opts:
    builtins.mapAttrs (_: o:
      if o._type or "" == "option"
      then o.default or null
      else defaults o)
    opts;
  # Every value the node sets must exist and have its option's type.
  typed = path: opts: vals:
    builtins.all (k: let
      o = opts.${k} or (throw "The option `${path}.${k}' does not exist");
      v = vals.${k};
    in
      if (o._type or "") == "option"
      then o.type.check v || throw "A definition for option `${path}.${k}' is not of type `${o.type.name}' (got a ${builtins.typeOf v})"
      else typed "${path}.${k}" o v)
    (builtins.attrNames vals);
  evalWith = config:
    module {
      inherit config lib;
      pkgs = self;
    };
  first = evalWith {services.s3rf-agent = {};};
  cfg = lib.recursiveUpdate (defaults first.options.services.s3rf-agent) sub;
  out = evalWith {services.s3rf-agent = cfg;};
  body = out.config.content;
  forced = builtins.deepSeq [
    (map (a: a.assertion) body.assertions)
    (builtins.attrNames body.systemd.services)
    (builtins.mapAttrs (_: s: builtins.toJSON s.serviceConfig) body.systemd.services)
    (builtins.mapAttrs (_: s: builtins.toJSON s.serviceConfig) (nodeModule.systemd.services or {}))
    (map (p: p.drvPath) (body.environment.systemPackages or []))
    (map (p: p.drvPath) (nodeModule.environment.systemPackages or []))
    body.environment.etc
  ];
in
  assert readOnly;
  assert insecureServices;
  assert typed "services.s3rf-agent" first.options.services.s3rf-agent sub;
  assert builtins.isString test.testScript;
  assert out.config.condition;
  assert builtins.all (a: a.assertion) body.assertions;
  assert body.systemd.services ? s3rf-agent;
    forced (drv "nixos-test-${test.name}" {})
