# The subset of nixpkgs.lib that s3rf uses, with nixpkgs' semantics.
let
  lib = rec {
    genAttrs = names: f: builtins.listToAttrs (map (n: nameValuePair n (f n)) names);
    nameValuePair = name: value: {inherit name value;};
    mapAttrs = builtins.mapAttrs;
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (builtins.attrNames set);
    attrValues = builtins.attrValues;
    optional = cond: x:
      if cond
      then [x]
      else [];
    optionals = cond: xs:
      if cond
      then xs
      else [];
    optionalAttrs = cond: set:
      if cond
      then set
      else {};
    recursiveUpdate = a: b:
      a
      // builtins.mapAttrs (n: v:
        if builtins.isAttrs v && builtins.isAttrs (a.${n} or null)
        then recursiveUpdate a.${n} v
        else v)
      b;
    concatMapStrings = f: xs: builtins.concatStringsSep "" (map f xs);
    concatStringsSep = builtins.concatStringsSep;
    hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;
    all = builtins.all;
    imap0 = f: xs: builtins.genList (i: f i (builtins.elemAt xs i)) (builtins.length xs);
    makeBinPath = xs: concatStringsSep ":" (map (x: "${x}/bin") xs);
    getExe = d: "${d}/bin/${d.meta.mainProgram}";
    cleanSource = src: src;
    # lib.fileset: only toSource and unions, with nixpkgs' rules that every
    # file set element is a path that exists under `root`
    # (lib/fileset/default.nix).
    fileset = {
      unions = paths:
        assert builtins.isList paths;
        assert builtins.all (p:
          if !builtins.isPath p
          then throw "lib.fileset.unions: ${toString p} is not a path"
          else builtins.pathExists p || throw "lib.fileset.unions: ${toString p} does not exist")
        paths; paths;
      toSource = {
        root,
        fileset,
      }:
        assert builtins.isPath root;
        assert builtins.all (p: hasPrefix (toString root) (toString p) || throw "lib.fileset.toSource: ${toString p} is not under root ${toString root}") fileset; root;
    };
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    mkOption = attrs: attrs // {_type = "option";};
    mkEnableOption = name:
      mkOption {
        type = types.bool;
        default = false;
        description = "Whether to enable ${name}.";
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    # Option types check values, as nixpkgs' do (lib/types.nix): a wrong
    # value fails evaluation, not only a wrong name.
    types = let
      t = name: check: {inherit name check;};
      isDrv = v: builtins.isAttrs v && (v.type or "") == "derivation";
    in {
      bool = t "bool" builtins.isBool;
      path = t "path" (v: builtins.isPath v || isDrv v || (builtins.isString v && hasPrefix "/" v));
      package = t "package" isDrv;
      str = t "str" builtins.isString;
      anything = t "anything" (v: !builtins.isFunction v);
      either = a: b: t "either ${a.name} ${b.name}" (v: a.check v || b.check v);
      nullOr = a: t "nullOr ${a.name}" (v: v == null || a.check v);
      listOf = a: t "listOf ${a.name}" (v: builtins.isList v && builtins.all a.check v);
      attrsOf = a: t "attrsOf ${a.name}" (v: builtins.isAttrs v && builtins.all a.check (builtins.attrValues v));
      submodule = m: t "submodule" builtins.isAttrs // {module = m;};
    };
    licenses.asl20 = {spdxId = "Apache-2.0";};
    platforms.linux = ["x86_64-linux" "aarch64-linux"];
  };
in
  lib
