# s3rf's own rules for its NixOS module (not nixpkgs'), evaluated by
# .ci/check-nix against the stub: each instance gets its config under
# /etc/s3rf and a wrapper on PATH that runs s3rf-agent with it, so the
# operator commands (`s3rf-agent status`, `migrate --wait`) reach the running
# agent (issue #16: without them they could not find it).
let
  lib = import ./nix-stub/lib.nix;
  pkgs = import ./nix-stub {system = "x86_64-linux";};
  module = import ../nix/module.nix;
  package = pkgs.callPackage ../nix/package.nix {};
  evalWith = cfg:
    (module {
      inherit lib pkgs;
      config.services.s3rf-agent =
        {
          enable = true;
          inherit package;
          settings = {};
          environmentFile = null;
          credentials = {};
          filters = [];
          bridge.enable = false;
        }
        // cfg;
    })
    .config
    .content;
  one = evalWith {instances = {};};
  two = evalWith {
    instances = {
      a = {
        settings = {};
        environmentFile = null;
      };
      b = {
        settings = {};
        environmentFile = null;
      };
    };
  };
  names = c: map (p: p.name) c.environment.systemPackages;
in
  assert one.environment.etc ? "s3rf/agent.toml" || throw "module: no /etc/s3rf/agent.toml for the default instance";
  assert names one == ["s3rf-agent"] || throw "module: the default instance needs an `s3rf-agent` wrapper on PATH (got ${builtins.toJSON (names one)})";
  assert two.environment.etc ? "s3rf/a.toml" && two.environment.etc ? "s3rf/b.toml" || throw "module: no /etc/s3rf/<instance>.toml per instance";
  assert names two == ["s3rf-agent-a" "s3rf-agent-b"] || throw "module: each instance needs an `s3rf-agent-<name>` wrapper (got ${builtins.toJSON (names two)})"; "ok"
