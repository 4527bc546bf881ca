# `import nixpkgs { system; overlays; }` for the stub: packages are
# placeholder derivations; functions check their arguments' names the way
# nixpkgs' do (callPackage fills only arguments that exist).
{
  system,
  overlays ? [],
}: let
  lib = import ./lib.nix;
  drv = name: attrs: let
    # Like stdenv.mkDerivation, string and list attributes (phases, inputs,
    # flags) become the derivation's environment, so every package and path
    # they mention must exist.
    env = builtins.removeAttrs (builtins.listToAttrs (map (n: {
        name = n;
        value = attrs.${n};
      }) (builtins.filter (n: builtins.isString attrs.${n} || builtins.isList attrs.${n}) (builtins.attrNames attrs))))
    ["name" "system" "builder" "args"];
    d =
      derivation (env
        // {
          inherit name system;
          builder = "/bin/sh";
          args = ["-c" "echo stub nixpkgs cannot build > $out; exit 1"];
        })
      // {
        meta = attrs.meta or {};
        nativeBuildInputs = attrs.nativeBuildInputs or [];
        overrideAttrs = f: drv (f (attrs // {inherit name;})).pname or name (attrs // f attrs);
        passthru = attrs.passthru or {};
      };
  in
    # nixpkgs refuses to evaluate a package marked insecure unless it is
    # allowed explicitly (pkgs/stdenv/generic/check-meta.nix).
    if (attrs.meta.knownVulnerabilities or []) != []
    then throw "Package ‘${name}’ is marked as insecure, refusing to evaluate: ${builtins.concatStringsSep "; " attrs.meta.knownVulnerabilities}"
    else d;
  pkg = name: drv name {meta.mainProgram = name;};
  base = self: {
    inherit lib system;
    stdenv.hostPlatform.system = system;
    callPackage = fn: overrides: let
      f =
        if builtins.isPath fn
        then import fn
        else fn;
      args = builtins.intersectAttrs (builtins.functionArgs f) (self // overrides);
    in
      f (args // overrides);
    # nixpkgs' rustc sends the wasm32 linker to `lld`, not rustup's
    # `rust-lld` (pkgs/development/compilers/rust/rustc.nix), so a build of
    # wasm32 code (s3rf's filters/build.sh) fails to link without lld.
    rustPlatform.buildRustPackage = attrs: let
      text = builtins.concatStringsSep " " (builtins.filter builtins.isString [(attrs.buildPhase or "") (toString (attrs.cargoBuildFlags or []))]);
      wasm = builtins.match ".*(wasm32|build\\.sh).*" text != null;
      hasLld = builtins.any (i: (i.name or "") == "lld") (attrs.nativeBuildInputs or []);
    in
      assert attrs ? cargoLock || attrs ? cargoHash;
      if wasm && !hasLld
      then throw "${attrs.pname}: builds wasm32 without lld in nativeBuildInputs; nixpkgs' rustc links wasm32 with lld (pkgs/development/compilers/rust/rustc.nix)"
      else drv "${attrs.pname}-${attrs.version}" attrs;
    fetchCrate = {
      pname,
      version,
      hash,
    }:
      assert lib.hasPrefix "sha256-" hash; drv "${pname}-${version}.tar.gz" {};
    dockerTools.streamLayeredImage = attrs:
      assert attrs ? name && attrs ? config; drv "${attrs.name}.tar.gz" attrs;
    writeShellApplication = attrs:
      assert attrs ? name && attrs ? text; drv attrs.name (attrs // {meta = (attrs.meta or {}) // {mainProgram = attrs.name;};});
    writeText = name: _text: drv name {};
    writeShellScriptBin = name: _text: drv name {meta.mainProgram = name;};
    runCommand = name: _env: _script: drv name {};
    linkFarm = name: _entries: drv name {};
    mkShell = attrs: assert attrs ? packages; drv "shell" attrs;
    formats.toml = _: {
      type = lib.types.attrsOf lib.types.anything;
      generate = name: value: builtins.seq (builtins.toJSON value) (drv name {});
    };
    testers.runNixOSTest = test: import ./nixos-test.nix {inherit lib test drv self;};
    python3.withPackages = f: let
      ps = {
        moto = pkg "moto" // {optional-dependencies.server = [(pkg "flask")];};
        boto3 = pkg "boto3";
      };
    in
      builtins.seq (f ps) (pkg "python3-env");
    makeWrapper = pkg "make-wrapper";
    nats-server = pkg "nats-server";
    # jemalloc with tikv-jemalloc-sys's `_rjem_` prefix; its setup hook
    # exports JEMALLOC_OVERRIDE (pkgs/by-name/ru/rust-jemalloc-sys/package.nix).
    rust-jemalloc-sys = pkg "rust-jemalloc-sys";
    natscli = pkg "nats";
    awscli2 = pkg "aws";
    rustup = pkg "rustup";
    rustfmt = pkg "rustfmt";
    clippy = pkg "clippy";
    wabt = pkg "wat2wasm";
    deadnix = pkg "deadnix";
    alejandra = pkg "alejandra";
    cacert = pkg "cacert";
    lld = pkg "lld";
    curl = pkg "curl";
    # Marked insecure in nixpkgs ("abandoned by upstream, will be removed for
    # 26.05"; pkgs/servers/minio/default.nix, pkgs/by-name/mi/minio-client).
    minio = drv "minio" {meta.knownVulnerabilities = ["MinIO is abandoned by upstream and will be removed for 26.05"];};
    minio-client = drv "mc" {meta.knownVulnerabilities = ["MinIO is abandoned by upstream and will be removed for 26.05"];};
  };
  fix = f: let x = f x; in x;
  applied = fix (self: builtins.foldl' (acc: o: acc // o self acc) (base self) overlays);
in
  applied
