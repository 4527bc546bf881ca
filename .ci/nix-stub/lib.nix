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
    types = let
      t = name: {inherit name;};
    in {
      bool = t "bool";
      path = t "path";
      package = t "package";
      str = t "str";
      either = a: b: t "either ${a.name} ${b.name}";
      nullOr = a: t "nullOr ${a.name}";
      listOf = a: t "listOf ${a.name}";
      attrsOf = a: t "attrsOf ${a.name}";
      submodule = m: t "submodule" // {module = m;};
    };
    licenses.asl20 = {spdxId = "Apache-2.0";};
    platforms.linux = ["x86_64-linux" "aarch64-linux"];
  };
in
  lib
