# A NixOS test, evaluated far enough to catch a broken module: each node's
# imported modules are called with a config assembled from the node's own
# settings over the module's option defaults, and every service the module
# defines is forced.
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
  defaults = opts:
    builtins.mapAttrs (_: o:
      if o._type or "" == "option"
      then o.default or null
      else defaults o)
    opts;
  evalWith = config: module {inherit config lib; pkgs = self;};
  first = evalWith {services.s3rf-agent = {};};
  cfg = lib.recursiveUpdate (defaults first.options.services.s3rf-agent) sub;
  out = evalWith {services.s3rf-agent = cfg;};
  body = out.config.content;
  forced = builtins.deepSeq [
    (map (a: a.assertion) body.assertions)
    (builtins.attrNames body.systemd.services)
    (builtins.mapAttrs (_: s: builtins.toJSON s.serviceConfig) body.systemd.services)
    body.environment.etc
  ];
in
  assert builtins.isString test.testScript;
  assert out.config.condition;
  assert builtins.all (a: a.assertion) body.assertions;
  assert body.systemd.services ? s3rf-agent;
    forced (drv "nixos-test-${test.name}" {})
