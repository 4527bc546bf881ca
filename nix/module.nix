# NixOS module: services.s3rf-agent.
#
#   services.s3rf-agent = {
#     enable = true;
#     settings = {
#       endpoints.src = { url = "https://s3.example.net"; access_key_id_env = "SRC_KEY"; secret_access_key_env = "SRC_SECRET"; };
#       endpoints.dst = { url = "http://127.0.0.1:3900"; path_style = true; access_key_id_env = "DST_KEY"; secret_access_key_env = "DST_SECRET"; };
#     };
#     credentials = { SRC_KEY = "/run/keys/src-key"; SRC_SECRET = "/run/keys/src-secret"; };
#     filters = [ "${pkgs.s3rf-filters}/lib/s3rf/filters/skip-glob.wasm" ];
#   };
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkEnableOption mkIf mkOption types;
  cfg = config.services.s3rf-agent;
  toml = pkgs.formats.toml {};

  # The filter directory: each entry of `filters` linked in. A package
  # contributes its lib/s3rf/filters/*, a directory its files, a file itself
  # (store hash stripped from the name). The chain runs in file-name order.
  filterDir = filters:
    pkgs.runCommand "s3rf-filter-dir" {} (''
        mkdir $out
      ''
      + lib.concatMapStrings (f: ''
        if [ -d ${f}/lib/s3rf/filters ]; then
          ln -s ${f}/lib/s3rf/filters/* $out/
        elif [ -d ${f} ]; then
          ln -s ${f}/* $out/
        else
          ln -s ${f} "$out/$(basename ${f} | sed -E 's/^[0-9a-z]{32}-//')"
        fi
      '')
      filters);

  # settings + the filter dir, validated at build time with `config check`.
  configFile = name: settings: let
    full = lib.recursiveUpdate settings (lib.optionalAttrs (cfg.filters != []) {
      filters.dir = "/etc/s3rf/filters";
    });
    raw = toml.generate "s3rf-${name}.toml" full;
  in
    pkgs.runCommand "s3rf-${name}-checked.toml" {} ''
      ${lib.getExe cfg.package} config check ${raw} > /dev/null
      cp ${raw} $out
    '';

  # `s3rf-agent` for the default instance, `s3rf-agent-<name>` for others.
  wrapper = name:
    pkgs.writeShellScriptBin (
      if name == "agent"
      then "s3rf-agent"
      else "s3rf-agent-${name}"
    ) ''
      export S3RF_CONFIG="''${S3RF_CONFIG:-/etc/s3rf/${name}.toml}"
      export STATE_DIRECTORY="''${STATE_DIRECTORY:-/var/lib/s3rf/${name}}"
      exec ${lib.getExe cfg.package} "$@"
    '';

  instanceOptions = {
    options = {
      settings = mkOption {
        type = toml.type;
        default = {};
        description = "Settings of this instance, merged over services.s3rf-agent.settings.";
      };
      environmentFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = "Extra EnvironmentFile= of this instance (not in the Nix store).";
      };
    };
  };

  serviceFor = name: {
    settings,
    environmentFile,
    command,
  }: {
    description = "s3rf ${command} (${name})";
    wantedBy = ["multi-user.target"];
    after = ["network-online.target"];
    wants = ["network-online.target"];
    restartTriggers = [(configFile name settings)];
    serviceConfig = {
      Type = "notify";
      NotifyAccess = "main";
      ExecStart = "${lib.getExe cfg.package} --config ${configFile name settings} ${command}";
      EnvironmentFile = lib.optional (environmentFile != null) environmentFile;
      LoadCredential = lib.mapAttrsToList (var: path: "${var}:${path}") cfg.credentials;
      KillSignal = "SIGTERM";
      TimeoutStopSec = 60;
      WatchdogSec = 60;
      Restart = "on-failure";
      RestartSec = "2s";
      DynamicUser = true;
      StateDirectory = "s3rf/${name}";
      # Hardening as in systemd/s3rf-agent.service. MemoryDenyWriteExecute
      # stays off: wasmtime's JIT (user filters) needs W+X memory.
      CapabilityBoundingSet = "";
      NoNewPrivileges = true;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      PrivateUsers = true;
      ProtectHostname = true;
      ProtectClock = true;
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectKernelLogs = true;
      ProtectControlGroups = true;
      ProtectProc = "invisible";
      ProcSubset = "pid";
      RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX"];
      RestrictNamespaces = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      LockPersonality = true;
      RemoveIPC = true;
      UMask = "0077";
      SystemCallArchitectures = "native";
      SystemCallFilter = ["@system-service" "~@privileged @resources"];
    };
  };

  instances =
    if cfg.instances == {}
    then {
      agent = {
        inherit (cfg) settings environmentFile;
      };
    }
    else
      lib.mapAttrs (_: i: {
        settings = lib.recursiveUpdate cfg.settings i.settings;
        environmentFile =
          if i.environmentFile != null
          then i.environmentFile
          else cfg.environmentFile;
      })
      cfg.instances;
in {
  options.services.s3rf-agent = {
    enable = mkEnableOption "the s3rf agent (copies objects between S3-compatible stores)";

    package = mkOption {
      type = types.package;
      default = pkgs.s3rf-agent or (throw "services.s3rf-agent.package: add s3rf's overlays.default to nixpkgs.overlays, or set package");
      defaultText = lib.literalExpression "pkgs.s3rf-agent";
      description = "The s3rf-agent package (nats-server on its PATH for embedded mode).";
    };

    settings = mkOption {
      type = toml.type;
      default = {};
      description = ''
        Agent configuration (README, "Configuration reference"), rendered to TOML
        and checked with `s3rf-agent config check` at build time. Never put
        secrets here: endpoints name environment variables or credentials.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/secrets/s3rf.env";
      description = "EnvironmentFile= with the variables named by *_env settings; must not be in the Nix store.";
    };

    credentials = mkOption {
      type = types.attrsOf types.path;
      default = {};
      example = {SRC_SECRET = "/run/keys/src-secret";};
      description = ''
        Secrets passed with systemd LoadCredential=: the agent reads a variable
        named by a *_env setting from $CREDENTIALS_DIRECTORY/<NAME> when it is
        not in the environment.
      '';
    };

    filters = mkOption {
      type = types.listOf (types.either types.package types.path);
      default = [];
      example = lib.literalExpression ''[ "''${pkgs.s3rf-filters}/lib/s3rf/filters/skip-glob.wasm" ]'';
      description = ''
        Wasm filters (and their .toml/.json parameter files) linked into
        /etc/s3rf/filters: packages (their lib/s3rf/filters), directories or
        files. The chain runs in file-name order, so name them 10-…, 20-….
      '';
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceOptions);
      default = {};
      description = "Several agents on this host (s3rf-agent-<name>.service), each with its settings merged over `settings`.";
    };

    bridge = {
      enable = mkEnableOption "the SQS ingress bridge (s3rf-bridge.service), with the same settings (they must set nats.url)";
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.environmentFile == null || !lib.hasPrefix builtins.storeDir (toString cfg.environmentFile);
        message = "services.s3rf-agent.environmentFile must not be in the Nix store (it holds secrets and the store is world-readable)";
      }
      {
        assertion = !cfg.bridge.enable || (cfg.settings.nats.url or "embedded") != "embedded";
        message = "services.s3rf-agent.bridge needs settings.nats.url: the embedded nats-server belongs to the agent's own state directory";
      }
      {
        assertion = lib.all (p: !lib.hasPrefix builtins.storeDir (toString p)) (lib.attrValues cfg.credentials);
        message = "services.s3rf-agent.credentials must not point into the Nix store";
      }
    ];

    # /etc/s3rf/<instance>.toml, and a wrapper per instance that runs
    # s3rf-agent with that config and state directory, so `s3rf-agent status`
    # (or `s3rf-agent-<name> status`) talks to the running agent. The
    # wrapper is the package's binary: do not add the package itself to
    # environment.systemPackages as well.
    environment.etc =
      lib.mapAttrs' (name: i: lib.nameValuePair "s3rf/${name}.toml" {source = configFile name i.settings;}) instances
      // lib.optionalAttrs (cfg.filters != []) {
        "s3rf/filters".source = filterDir cfg.filters;
      };

    environment.systemPackages = lib.mapAttrsToList (name: _: wrapper name) instances;

    systemd.services =
      lib.mapAttrs' (name: i:
        lib.nameValuePair
        (
          if name == "agent"
          then "s3rf-agent"
          else "s3rf-agent-${name}"
        )
        (serviceFor name (i // {command = "run";})))
      instances
      // lib.optionalAttrs cfg.bridge.enable {
        s3rf-bridge = serviceFor "bridge" {
          inherit (cfg) settings environmentFile;
          command = "bridge";
        };
      };
  };
}
