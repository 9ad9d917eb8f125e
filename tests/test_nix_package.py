"""The flake, package and module of nix/, evaluated against stand-ins for nixpkgs.

nixpkgs is not available here, so the flake, package and module are
evaluated against small stand-ins (``STAND_INS`` below) that implement just
the library functions they call, and the module against a small module
system (``evalModule``): option declarations with defaults and type checks,
definitions merged by priority (``mkDefault``, option defaults), ``mkIf`` and
``mkMerge`` pushed down into attribute sets, lists concatenated, undeclared
``services.nixshard`` options reported.  The module is evaluated in full,
as NixOS would (``config`` is the fixpoint of all definitions), and the
generated units are checked: argv (parsed by the real click commands with
the generated TOML files), credentials, timers, users, directories and the
sandbox.  Every test drives the real ``nix-instantiate`` (marked ``nix``).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import tomli_w

from tests.nix_tools import REPO, nix_eval, nix_tool, run_nix
from tests.support.nix_docs import NIXOS_DOC, nix_blocks

# Stand-ins for nixpkgs: the library functions the files call, with the same
# results for the inputs used here, and `evalModule`, a small module system:
#  - options are declared with mkOption (mkEnableOption, mkPackageOption as in
#    nixpkgs); a declared option without a definition takes its default, one
#    without either throws when used; a value of the wrong type throws;
#  - definitions carry properties: mkIf (condition), mkMerge (several),
#    mkOverride/mkDefault/mkForce (priority; an option default is 1500,
#    mkDefault 1000, a plain definition 100): the highest priority wins, lists
#    of equal priority are concatenated, other conflicts throw;
#  - properties around attribute sets are pushed down to their attributes, so
#    the attribute names of `config` never depend on a condition (a module can
#    read `config` in its mkIf conditions without infinite recursion);
#  - below a declared namespace every name is kept; in undeclared attribute
#    sets (systemd.services, users.users, freeform `settings`, as attrsOf in
#    nixpkgs) a name whose definitions all have a false mkIf is dropped;
#  - a definition under services.nixshard that no option declares is listed
#    in `undeclared` (nixpkgs: "The option ... does not exist").
STAND_INS = r"""
let
  drv = name: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; inherit name; };
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  hasSuffix = p: s:
    let n = builtins.stringLength s; k = builtins.stringLength p;
    in n >= k && builtins.substring (n - k) k s == p;
  isType = t: v: builtins.isAttrs v && (v._type or null) == t;
  unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption {
      type = types.bool; default = false; example = true;
      description = "Whether to enable ${name}.";
    };
    # As nixpkgs' lib.options.mkPackageOption.
    mkPackageOption = pkgs: name:
      { nullable ? false, default ? name, example ? null, extraDescription ? ""
      , pkgsText ? "pkgs" }:
      let
        name' = if builtins.isList name then last name else name;
        default' = if builtins.isList default then default else [ default ];
        defaultText = concatStringsSep "." default';
      in mkOption ({
        type = if nullable then types.nullOr types.package else types.package;
        description = "The ${name'} package to use."
          + (if extraDescription == "" then "" else " " + extraDescription);
      } // (if default == null then optionalAttrs nullable { default = null; } else {
        default = attrByPath default' (throw "${defaultText} cannot be found in ${pkgsText}") pkgs;
        defaultText = literalExpression "${pkgsText}.${defaultText}";
      }) // optionalAttrs (example != null) { example = literalExpression example; });
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    types = rec {
      mkType = name: check: { _type = "option-type"; inherit name check; };
      bool = mkType "bool" builtins.isBool;
      str = mkType "str" builtins.isString;
      path = mkType "path" (v: builtins.isPath v
        || ((builtins.isString v || v ? outPath) && hasPrefix "/" "${v}"));
      package = mkType "package" (v: builtins.isAttrs v && v ? outPath);
      nullOr = t: mkType "null or ${t.name}" (v: v == null || t.check v);
      listOf = t: mkType "list of ${t.name}" (v: builtins.isList v && builtins.all t.check v);
      either = a: b: mkType "${a.name} or ${b.name}" (v: a.check v || b.check v);
      submodule = m: mkType "submodule" builtins.isAttrs // { submodule = m; };
      ints.positive = mkType "positive integer, meaning >0" (v: builtins.isInt v && v > 0);
    };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
    attrByPath = path: default: set:
      if path == [ ] then set
      else if builtins.isAttrs set && set ? ${builtins.head path}
      then attrByPath (builtins.tail path) default set.${builtins.head path}
      else default;
    concatMap = builtins.concatMap;
    concatStringsSep = builtins.concatStringsSep;
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    last = xs: builtins.elemAt xs (builtins.length xs - 1);
    toInt = s: builtins.fromJSON s;
    inherit hasPrefix;
    removePrefix = p: s:
      if hasPrefix p s then builtins.substring (builtins.stringLength p) (-1) s else s;
    removeSuffix = p: s:
      if hasSuffix p s
      then builtins.substring 0 (builtins.stringLength s - builtins.stringLength p) s
      else s;
    # As nixpkgs' lib.strings.escapeShellArg: quoted only when needed.
    escapeShellArg = arg:
      let s = toString arg; in
      if builtins.match "[[:alnum:],._+:@%/-]+" s == null
      then "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'"
      else s;
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
    makeLibraryPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/lib") ps);
    cleanSource = src: src;
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  };

  # --- the module system -------------------------------------------------
  plainAttrs = v: builtins.isAttrs v && !(v ? _type) && !(v ? outPath);
  rewrap = prop: v:
    if prop._type == "if" then lib.mkIf prop.condition v else lib.mkOverride prop.priority v;
  # One definition as definitions of plain attribute sets, properties pushed
  # into the attributes (conditions are not evaluated); anything else as is.
  pushDown = def:
    if isType "merge" def then builtins.concatMap pushDown def.contents
    else if isType "if" def || isType "override" def then
      let inner = pushDown def.content; in
      if builtins.all plainAttrs inner
      then map (builtins.mapAttrs (_: rewrap def)) inner
      else [ def ]
    else [ def ];
  # Whether a definition survives its conditions (at its own level).
  contributes = def:
    if isType "merge" def then builtins.any contributes def.contents
    else if isType "if" def then def.condition && contributes def.content
    else if isType "override" def then contributes def.content
    else true;
  # A definition as { priority, value } pairs, conditions evaluated. As in
  # nixpkgs, the content of an override is not looked into (write mkIf outside
  # mkDefault), so a default that throws (mkPackageOption) is never evaluated
  # when a definition of higher priority exists.
  discharge = priority: def:
    if isType "merge" def then builtins.concatMap (discharge priority) def.contents
    else if isType "if" def then (if def.condition then discharge priority def.content else [ ])
    else if isType "override" def then [ { inherit (def) priority; value = def.content; } ]
    else [ { inherit priority; value = def; } ];
  showPath = builtins.concatStringsSep ".";
  evalLeaf = path: defs:
    let
      all = builtins.concatMap (discharge 100) defs;
      best = builtins.foldl' (p: d: if d.priority < p then d.priority else p) 10000 all;
      values = map (d: d.value) (builtins.filter (d: d.priority == best) all);
      first = builtins.head values;
    in
    if builtins.length values == 0
    then throw "The option `${showPath path}' is used but not defined."
    else if builtins.all builtins.isList values then builtins.concatLists values
    else if builtins.length values == 1 || builtins.all (v: v == first) values then first
    else throw "The option `${showPath path}' has conflicting definition values.";
  evalOption = path: opt: defs:
    let all = defs ++ (if opt ? default then [ (lib.mkOverride 1500 opt.default) ] else [ ]); in
    if opt.type ? submodule then evalNode path null all   # freeform settings: merged like attrsOf
    else
      let value = evalLeaf path all; in
      if opt.type.check value then value
      else throw "The option `${showPath path}' is not of type `${opt.type.name}'.";
  # The value at `path` of the definitions `defs`; `decl`: the declarations
  # there (an option, a namespace of options, or null when undeclared).
  evalNode = path: decl: defs:
    if isType "option" decl then evalOption path decl defs
    else
      let
        pushed = builtins.concatMap pushDown defs;
        declared = decl != null;
        attrDefs = builtins.filter plainAttrs pushed;
        names = unique (builtins.concatMap builtins.attrNames attrDefs
          ++ (if declared then builtins.attrNames decl else [ ]));
        childDefs = name:
          builtins.concatMap (d: if d ? ${name} then [ d.${name} ] else [ ]) attrDefs;
        keep = name: if declared then true else builtins.any contributes (childDefs name);
        child = name: evalNode (path ++ [ name ])
          (if declared then decl.${name} or null else null) (childDefs name);
      in
      if !declared && !(builtins.all plainAttrs pushed) then evalLeaf path defs
      else builtins.listToAttrs (map (name: { inherit name; value = child name; })
        (builtins.filter keep names));
  # Paths defined under services.nixshard that no option declares.
  undeclaredPaths = path: decl: defs:
    let
      pushed = builtins.filter plainAttrs (builtins.concatMap pushDown defs);
      names = unique (builtins.concatMap builtins.attrNames pushed);
      childDefs = name: builtins.concatMap (d: if d ? ${name} then [ d.${name} ] else [ ]) pushed;
    in
    builtins.concatMap (name:
      if !(decl ? ${name}) then
        (if builtins.length path >= 2 then [ (showPath (path ++ [ name ])) ] else [ ])
      else if isType "option" decl.${name} then [ ]
      else undeclaredPaths (path ++ [ name ]) decl.${name} (childDefs name)) names;
  evalModule = { module, config, pkgs }:
    let
      m = module { config = final; inherit lib pkgs; };
      defs = [ config m.config ];
      final = evalNode [ ] m.options defs;
    in { inherit (m) options; config = final; undeclared = undeclaredPaths [ ] m.options defs; };
  # Every option under `tree` as { path, description, type }.
  optionList = path: tree: builtins.concatMap (name:
    let v = tree.${name}; p = path ++ [ name ]; in
    if isType "option" v
    then [ { path = showPath p; description = v.description or ""; type = v.type.name; } ]
    else optionList p v) (builtins.attrNames tree);

  python3Packages = names:
    builtins.listToAttrs (map (name: { inherit name; value = drv name; }) names) // {
      buildPythonApplication = attrs: attrs;
      python = drv "python3" // { interpreter = "/nix/store/python3/bin/python3"; };
    };
  pkgs = pythonNames: {
    inherit lib;
    python3Packages = python3Packages pythonNames;
    isa-l = drv "isa-l";
    bash = drv "bash";
    coreutils = drv "coreutils";
    util-linux = drv "util-linux";
    nixshard = drv "nixshard";
    callPackage = fn: args: drv "called" // { inherit fn args; };
    formats.toml = { }: {
      type = lib.types.mkType "TOML value" (_: true);
      generate = name: value: drv name // { inherit value; };
    };
    writeShellScript = name: text: drv name // { inherit text; };
  };
in
"""


def pyproject() -> dict[str, Any]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def attribute_names(specs: list[str]) -> list[str]:
    """Requirement specs as nixpkgs attribute names (PEP 503 normalized project names)."""
    names = []
    for spec in specs:
        match = re.match(r"[A-Za-z0-9._-]+", spec)
        assert match, spec
        names.append(re.sub(r"[-_.]+", "-", match.group(0)).lower())
    return names


def pyproject_dependencies() -> list[str]:
    """pyproject's runtime dependencies as nixpkgs attribute names."""
    return attribute_names(pyproject()["project"]["dependencies"])


def pyproject_build_system() -> list[str]:
    """pyproject's build-system requirements as nixpkgs attribute names."""
    return attribute_names(pyproject()["build-system"]["requires"])


@pytest.mark.nix
def test_flake_outputs_with_a_stand_in_nixpkgs() -> None:
    got = nix_eval(STAND_INS + """{ repo, deps }: let
        flake = import (/. + repo + "/nix/flake.nix");
        nixpkgs = {
          lib.genAttrs = names: f:
            builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
          legacyPackages = nixpkgs.lib.genAttrs [ "x86_64-linux" "aarch64-linux" ]
            (_: pkgs (builtins.fromJSON deps));
        };
        self = flake.outputs { inherit self nixpkgs; };
        pkg = self.packages.x86_64-linux.default;
        overlaid = self.overlays.default (pkgs [ ]) { };
      in {
        systems = builtins.attrNames self.packages;
        packageNames = builtins.attrNames self.packages.aarch64-linux;
        defaultIsNixshard = pkg == self.packages.x86_64-linux.nixshard;
        callsPackageNix = pkg.fn == /. + repo + "/nix/package.nix";
        srcIsRepoRoot = pkg.args.src == /. + repo;
        app = self.apps.x86_64-linux.default;
        moduleIsModuleNix = self.nixosModules.default == /. + repo + "/nix/module.nix";
        overlayCallsPackageNix = overlaid.nixshard.fn == /. + repo + "/nix/package.nix";
      }""", repo=str(REPO), deps=json.dumps(pyproject_dependencies()))
    assert isinstance(got, dict)
    assert got["systems"] == ["aarch64-linux", "x86_64-linux"]
    assert got["packageNames"] == ["default", "nixshard"]
    assert got["defaultIsNixshard"] is True
    assert got["callsPackageNix"] is True
    assert got["srcIsRepoRoot"] is True
    assert got["app"]["type"] == "app"
    assert re.fullmatch(r"/nix/store/[a-z0-9]{32}-called/bin/nixshard", got["app"]["program"])
    assert got["moduleIsModuleNix"] is True
    assert got["overlayCallsPackageNix"] is True


@pytest.mark.nix
def test_package_matches_pyproject() -> None:
    deps = pyproject_dependencies()
    got = nix_eval(STAND_INS + """{ repo, deps }: let
        p = pkgs (builtins.fromJSON deps);
        drv = import (/. + repo + "/nix/package.nix") {
          inherit (p) lib python3Packages isa-l;
          src = /. + repo;
        };
      in {
        inherit (drv) pname version pyproject doCheck makeWrapperArgs pythonImportsCheck
          postInstall meta;
        dependencies = map (d: d.name) drv.dependencies;
        buildSystem = map (d: d.name) drv.build-system;
        srcIsRepoRoot = drv.src == /. + repo;
      }""", repo=str(REPO), deps=json.dumps(deps + pyproject_build_system()))
    assert isinstance(got, dict)
    project = pyproject()["project"]
    assert got["pname"] == project["name"]
    assert got["version"] == project["version"]
    assert got["pyproject"] is True
    assert got["buildSystem"] == pyproject_build_system() == ["setuptools"]
    assert sorted(got["dependencies"]) == sorted(deps)
    assert got["doCheck"] is False
    assert got["srcIsRepoRoot"] is True
    assert got["meta"]["mainProgram"] == "nixshard"
    assert got["meta"]["description"] == project["description"]
    # pyeclib's isa_l_rs_cauchy backend is dlopen()ed from isa-l at run time.
    assert got["makeWrapperArgs"][:3] == ["--prefix", "LD_LIBRARY_PATH", ":"]
    assert "isa-l/lib" in got["makeWrapperArgs"][3]
    assert "isa_l_rs_cauchy" in got["postInstall"]
    assert "storage_network.coding.chunker" in got["pythonImportsCheck"]
    script = project["scripts"]["nixshard"].split(":")[0]
    assert script in got["pythonImportsCheck"]


# ---------------------------------------------------------------------------
# The NixOS module, evaluated in full with the stand-in module system

STORE = "/nix/store/00000000000000000000000000000000-"
NIXSHARD = f"{STORE}nixshard/bin/nixshard"
NETWORK = "/etc/nixshard/network.toml"

# A machine running everything: a gateway on port 80 (the capability case), a
# node whose data lies outside /var/lib, the post-build hook and its spool
# service, the three maintenance timers and the substituter.
FULL_CONFIG = """{
  networking.hostName = "host-a";
  nix.package = drv "nix";
  services.nixshard = {
    package = drv "nixshard";
    gateway = {
      enable = true;
      networkFile = "/etc/nixshard/network.toml";
      listen = "0.0.0.0:80";
      signingKeyFile = "/run/secrets/signing.key";
      uploadCredentialsFile = "/run/secrets/upload";
      cacheSecretFile = "/run/secrets/cache-secret";
      environmentFile = "/run/secrets/gateway.env";
      openFirewall = true;
      settings.priority = 20;
    };
    node = {
      enable = true;
      dataDir = "/srv/disk1/nixshard";
      user = "nixshard";
      group = "nixshard";
      networkFile = "/etc/nixshard/network.toml";
      acceptPublishers = [ "extra-1:AAAA" ];
      nodeId = "node-3";
      openFirewall = true;
      settings.listen = "0.0.0.0:9002";   # wins over node.listen (mkDefault)
    };
    push = {
      networkFile = "/etc/nixshard/network.toml";
      signingKeyFile = "/run/secrets/push-signing.key";
      cacheSecretFile = "/run/secrets/cache.keyring";
      environmentFile = "/run/secrets/push.env";
      settings = { jobs = 8; retry_max_delay = 600.0; };
    };
    postBuildHook.enable = true;
    maintenance = {
      maintenanceKeyFile = "/run/secrets/maintenance.key";
      environmentFile = "/run/secrets/maintenance.env";
      audit = { enable = true; extraArgs = [ "--sample" "200" ]; };
      repair = { enable = true; startAt = "*-*-* 03:00:00"; extraArgs = [ "--jobs" "2" ]; };
      gc = { enable = true; extraArgs = [ "--max-age" "90d" ]; };
    };
    substituter = { enable = true; publicKey = "mycache-1:BBBB"; };
  };
}"""

# The least a gateway and a node need; everything else from the defaults.
MINIMAL_CONFIG = """{
  networking.hostName = "host-b";
  nix.package = drv "nix";
  services.nixshard = {
    gateway = { enable = true; networkFile = "/etc/nixshard/network.toml"; };
    node = { enable = true; networkFile = "/etc/nixshard/network.toml"; };
  };
}"""


def module_expr(config: str, body: str, pkgs: str = "pkgs [ ]") -> str:
    """A Nix function of ``repo`` evaluating the module with ``config``; ``body`` sees
    ``c`` (the final config), ``opts`` (services.nixshard's options) and ``evaluated``."""
    return STAND_INS + f"""{{ repo }}: let
        evaluated = evalModule {{
          module = import (/. + repo + "/nix/module.nix");
          config = {config};
          pkgs = {pkgs};
        }};
        c = evaluated.config;
        opts = evaluated.options.services.nixshard;
      in {body}"""


def eval_module(config: str, body: str, pkgs: str = "pkgs [ ]") -> Any:
    return nix_eval(module_expr(config, body, pkgs), repo=str(REPO))


def hardened(unit: dict[str, Any]) -> None:
    """The sandbox every nixshard unit has (nix/module.nix: `sandbox`)."""
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                "ProtectControlGroups", "ProtectClock", "ProtectHostname", "LockPersonality",
                "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
                "MemoryDenyWriteExecute", "RemoveIPC"):
        assert unit[key] is True, key
    assert unit["ProtectSystem"] == "strict"
    assert unit["ProtectProc"] == "invisible"
    assert unit["DevicePolicy"] == "closed"
    assert unit["LimitNOFILE"] == 65536
    assert unit["UMask"] == "0077"
    assert unit["RestrictAddressFamilies"] == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert unit["SystemCallFilter"] == ["@system-service", "~@privileged", "~@resources"]
    assert unit["SystemCallArchitectures"] == "native"


def check_command_line(exec_start: str, settings: dict[str, Any] | None,
                       tmp_path: Path) -> click.Context:
    """Parse ExecStart as the real `nixshard` would, with ``settings`` as the --config file.

    Returns the subcommand's context: its ``params`` are what the command would run with.
    """
    from nixshard.cli import main  # the console command, every subcommand with its options

    argv = shlex.split(exec_start)
    assert argv[0] == NIXSHARD
    name, args = argv[1], argv[2:]
    if settings is not None:
        assert args[0] == "--config" and args[1].startswith(STORE) and args[1].endswith(".toml")
        config_file = tmp_path / f"{name}.toml"
        config_file.write_text(tomli_w.dumps(settings))
        args = ["--config", str(config_file), *args[2:]]
    command = main.commands[name]
    return command.make_context(name, args)


@pytest.mark.nix
def test_module_in_full(tmp_path: Path) -> None:
    got = eval_module(FULL_CONFIG, """{
        # --strict: the whole config evaluates (no option used but undefined, no type error)
        config = c;
        options = builtins.mapAttrs (_: o: builtins.attrNames o)
          (builtins.removeAttrs opts [ "package" ]);
        undeclared = evaluated.undeclared;
        hook = c.nix.settings.post-build-hook.text;
        hookFile = "${/. + repo + "/nix/post-build-hook.sh"}";
        failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      }""")
    assert isinstance(got, dict)
    c = got["config"]
    assert got["undeclared"] == []
    assert got["failed"] == []
    assert got["options"] == {
        "gateway": ["cacheDir", "cacheSecretFile", "enable", "environmentFile", "group",
                    "listen", "networkFile", "openFirewall", "settings", "signingKeyFile",
                    "uploadCredentialsFile", "user", "workers"],
        "maintenance": ["audit", "environmentFile", "gc", "group", "maintenanceKeyFile",
                        "networkFile", "repair", "user"],
        "node": ["acceptPublishers", "bootstrapFile", "dataDir", "enable", "environmentFile",
                 "group", "keyFile", "listen", "mapFile", "networkFile", "nodeId",
                 "openFirewall", "settings", "user"],
        "postBuildHook": ["enable", "spoolDir"],
        "push": ["cacheSecretFile", "configFile", "environmentFile", "group", "networkFile",
                 "settings", "signingKeyFile", "user"],
        "substituter": ["enable", "publicKey", "url"],
    }
    nixshard = c["services"]["nixshard"]
    services = c["systemd"]["services"]
    assert sorted(services) == ["nixshard-audit", "nixshard-gateway", "nixshard-gc",
                                "nixshard-node", "nixshard-push-spool", "nixshard-repair"]
    for name, service in services.items():
        hardened(service["serviceConfig"])
        assert service["environment"]["PYTHONUNBUFFERED"] == "1", name
        assert "network-online.target" in service["after"], name

    # The gateway: credentials, environment file, port 80, the audit's state directory.
    gateway = services["nixshard-gateway"]["serviceConfig"]
    assert gateway["ExecStart"] == (
        f"{NIXSHARD} serve --config {STORE}nixshard-gateway.toml"
        " --signing-key %d/signing-key --upload-credentials %d/upload-credentials"
        " --cache-secret %d/cache-secret")
    assert gateway["LoadCredential"] == ["signing-key:/run/secrets/signing.key",
                                         "upload-credentials:/run/secrets/upload",
                                         "cache-secret:/run/secrets/cache-secret"]
    assert gateway["EnvironmentFile"] == "/run/secrets/gateway.env"
    assert gateway["CacheDirectory"] == "nixshard-gateway"
    assert gateway["StateDirectory"] == "nixshard-gateway"
    assert (gateway["DynamicUser"], gateway["User"]) == (True, "nixshard-gateway")
    assert (gateway["Restart"], gateway["RestartSec"]) == ("on-failure", 5)
    # Port 80 is the one exception to "no capabilities", and to PrivateUsers.
    assert gateway["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert gateway["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert gateway["PrivateUsers"] is False
    assert services["nixshard-gateway"]["wantedBy"] == ["multi-user.target"]
    assert nixshard["gateway"]["settings"] == {
        "network": NETWORK, "listen": "0.0.0.0:80", "cache_dir": "/var/cache/nixshard-gateway",
        "scores": "/var/lib/nixshard-gateway/scores.json", "priority": 20}
    serve = check_command_line(gateway["ExecStart"], nixshard["gateway"]["settings"], tmp_path)
    assert serve.params["scores_file"] == Path("/var/lib/nixshard-gateway/scores.json")
    assert serve.params["priority"] == 20
    assert serve.params["signing_key"] == "%d/signing-key"
    assert serve.params["cache_secret"] == "%d/cache-secret"

    # The node: a static user, its data outside /var/lib.
    node = services["nixshard-node"]["serviceConfig"]
    assert node["ExecStart"] == f"{NIXSHARD} node --config {STORE}nixshard-node.toml"
    assert node["ReadWritePaths"] == ["/srv/disk1/nixshard"]
    assert "StateDirectory" not in node
    assert (node["DynamicUser"], node["User"], node["Group"]) == (False, "nixshard", "nixshard")
    assert node["CapabilityBoundingSet"] == ""
    assert node["PrivateUsers"] is True
    assert nixshard["node"]["settings"] == {
        "data": "/srv/disk1/nixshard", "listen": "0.0.0.0:9002", "network": NETWORK,
        "accept_publisher": ["extra-1:AAAA"], "node_id": "node-3"}
    node_ctx = check_command_line(node["ExecStart"], nixshard["node"]["settings"], tmp_path)
    assert node_ctx.params["node_id"] == "node-3"

    # The spool service and the push.toml generated from push.settings.
    spool = services["nixshard-push-spool"]
    assert spool["wantedBy"] == ["multi-user.target"]
    assert "nix-daemon.socket" in spool["after"]
    assert spool["path"] == [f"{STORE}nix"]
    spool_unit = spool["serviceConfig"]
    assert spool_unit["ExecStart"] == (
        f"{NIXSHARD} push --config {STORE}nixshard-push.toml --spool /var/spool/nixshard"
        " --signing-key %d/signing-key --cache-secret %d/cache-secret")
    assert spool_unit["LoadCredential"] == ["signing-key:/run/secrets/push-signing.key",
                                            "cache-secret:/run/secrets/cache.keyring"]
    assert spool_unit["EnvironmentFile"] == "/run/secrets/push.env"
    assert spool_unit["ReadWritePaths"] == ["/var/spool/nixshard"]
    assert (spool_unit["DynamicUser"], spool_unit["User"], spool_unit["Group"]) == (
        False, "nixshard-push", "nixshard-push")
    assert spool_unit["PrivateUsers"] is True
    assert spool_unit["Restart"] == "on-failure"
    assert spool_unit["LimitSTACK"] == "64M"  # so that `nix` needs no setrlimit (~@resources)
    assert nixshard["push"]["settings"] == {"network": NETWORK, "jobs": 8,
                                            "retry_max_delay": 600.0}
    push = check_command_line(spool_unit["ExecStart"], nixshard["push"]["settings"], tmp_path)
    assert push.params["spool_dir"] == "/var/spool/nixshard"
    assert push.params["jobs"] == 8
    assert push.params["retry_max_delay"] == 600.0
    assert c["users"]["users"]["nixshard-push"] == {
        "isSystemUser": True, "group": "nixshard-push",
        "description": "nixshard spool (post-build hook and nixshard-push-spool)"}
    assert c["users"]["groups"] == {"nixshard-push": {}}
    assert c["systemd"]["tmpfiles"]["rules"] == [
        "d /srv/disk1/nixshard 0700 nixshard nixshard - -",
        "d /var/spool/nixshard 0700 nixshard-push nixshard-push - -"]

    # The post-build hook: spools as the push user, never pushes itself.
    hook = got["hook"]
    assert "export NIXSHARD_SPOOL_DIR=/var/spool/nixshard\n" in hook
    assert f"export PATH={STORE}nix/bin:{STORE}coreutils/bin:$PATH" in hook
    assert (f"exec {STORE}util-linux/bin/setpriv --reuid=nixshard-push --regid=nixshard-push"
            " --clear-groups --no-new-privs") in hook
    assert f"{STORE}bash/bin/bash {got['hookFile']}" in hook
    assert "NIXSHARD_PUSH_CONFIG" not in hook and "signing" not in hook
    assert c["nix"]["settings"]["post-build-hook"] == f"{STORE}nixshard-post-build-hook"

    # Maintenance: oneshot units on persistent timers.
    timers = c["systemd"]["timers"]
    assert sorted(timers) == ["nixshard-audit", "nixshard-gc", "nixshard-repair"]
    assert {name: t["timerConfig"]["OnCalendar"] for name, t in timers.items()} == {
        "nixshard-audit": "hourly", "nixshard-repair": "*-*-* 03:00:00",
        "nixshard-gc": "weekly"}
    for timer in timers.values():
        assert timer["wantedBy"] == ["timers.target"]
        assert timer["timerConfig"]["Persistent"] is True
    maintenance = {name: services[name]["serviceConfig"] for name in timers}
    for unit in maintenance.values():
        assert unit["Type"] == "oneshot"
        assert "Restart" not in unit
        assert unit["EnvironmentFile"] == "/run/secrets/maintenance.env"
        assert unit["PrivateUsers"] is True and unit["CapabilityBoundingSet"] == ""
    # audit runs as the gateway's (dynamic) user and writes the scores the gateway reads
    audit = maintenance["nixshard-audit"]
    assert audit["ExecStart"] == (
        f"{NIXSHARD} audit --network {NETWORK} --scores /var/lib/nixshard-gateway/scores.json"
        " --report /var/lib/nixshard-gateway/audit-report.json --sample 200")
    assert (audit["DynamicUser"], audit["User"]) == (True, "nixshard-gateway")
    assert audit["StateDirectory"] == gateway["StateDirectory"]
    assert "LoadCredential" not in audit
    assert maintenance["nixshard-repair"]["ExecStart"] == (
        f"{NIXSHARD} repair --network {NETWORK} --signing-key %d/maintenance-key --jobs 2")
    assert maintenance["nixshard-gc"]["ExecStart"] == (
        f"{NIXSHARD} gc --network {NETWORK} --signing-key %d/maintenance-key --max-age 90d")
    for name in ("nixshard-repair", "nixshard-gc"):
        assert maintenance[name]["LoadCredential"] == [
            "maintenance-key:/run/secrets/maintenance.key"]
        assert (maintenance[name]["DynamicUser"], maintenance[name]["User"]) == (True, name)
    for name, unit in maintenance.items():
        ctx = check_command_line(unit["ExecStart"], None, tmp_path)
        assert ctx.params["network_file"] == NETWORK, name
    assert check_command_line(audit["ExecStart"], None, tmp_path).params["sample"] == 200
    gc = check_command_line(maintenance["nixshard-gc"]["ExecStart"], None, tmp_path)
    assert gc.params["max_age"] == 90 * 86400

    # The substituter defaults to the local gateway; both ports are opened.
    assert nixshard["substituter"]["url"] == "http://127.0.0.1:80"
    assert c["nix"]["settings"]["substituters"] == ["http://127.0.0.1:80"]
    assert c["nix"]["settings"]["trusted-public-keys"] == ["mycache-1:BBBB"]
    assert c["networking"]["firewall"]["allowedTCPPorts"] == [80, 9002]


@pytest.mark.nix
def test_module_defaults(tmp_path: Path) -> None:
    got = eval_module(MINIMAL_CONFIG, """{
        # all but services.nixshard, whose options without a default are not all set here
        config = builtins.removeAttrs c [ "services" ] // {
          services.nixshard = { inherit (c.services.nixshard) gateway node; };
        };
        package = c.services.nixshard.package;
        packageOption = {
          inherit (opts.package) defaultText description;
          type = opts.package.type.name;
        };
        failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      }""")
    assert isinstance(got, dict)
    c = got["config"]
    assert got["failed"] == []
    # mkPackageOption pkgs "nixshard" { }: pkgs.nixshard
    assert got["package"] == f"{STORE}nixshard"
    assert got["packageOption"] == {
        "type": "package", "description": "The nixshard package to use.",
        "defaultText": {"_type": "literalExpression", "text": "pkgs.nixshard"}}
    services = c["systemd"]["services"]
    assert sorted(services) == ["nixshard-gateway", "nixshard-node"]
    assert c["systemd"].get("timers", {}) == {}
    assert c["systemd"].get("tmpfiles", {}).get("rules", []) == []
    assert not c["users"]  # no spool user without the hook
    assert "settings" not in c["nix"]  # no hook, no substituter
    gateway = services["nixshard-gateway"]["serviceConfig"]
    assert gateway["ExecStart"] == f"{NIXSHARD} serve --config {STORE}nixshard-gateway.toml"
    assert gateway["LoadCredential"] == []
    assert "EnvironmentFile" not in gateway and "StateDirectory" not in gateway
    assert (gateway["DynamicUser"], gateway["User"], gateway["Group"]) == (
        True, "nixshard-gateway", "nixshard-gateway")
    assert gateway["PrivateUsers"] is True and gateway["CapabilityBoundingSet"] == ""
    assert c["services"]["nixshard"]["gateway"]["settings"] == {
        "network": NETWORK, "listen": "127.0.0.1:5000",
        "cache_dir": "/var/cache/nixshard-gateway"}
    node = services["nixshard-node"]["serviceConfig"]
    assert node["StateDirectory"] == "nixshard-node"
    assert node["StateDirectoryMode"] == "0700"
    assert "ReadWritePaths" not in node
    assert (node["DynamicUser"], node["User"]) == (True, "nixshard-node")
    assert c["services"]["nixshard"]["node"]["settings"] == {
        "data": "/var/lib/nixshard-node", "listen": "0.0.0.0:9001", "network": NETWORK,
        "node_id": "host-b"}
    for service in services.values():
        hardened(service["serviceConfig"])
    assert "allowedTCPPorts" not in c.get("networking", {}).get("firewall", {})
    check_command_line(gateway["ExecStart"], c["services"]["nixshard"]["gateway"]["settings"],
                       tmp_path)


@pytest.mark.nix
def test_a_node_with_a_key_following_a_map(tmp_path: Path) -> None:
    # No network file: the map names the publishers; the id derives from the key, so the
    # host name is not passed as --node-id (the node would refuse to start: not the key's).
    got = eval_module(f"""{{ {BASE} services.nixshard.node = {{
        enable = true; keyFile = "/var/lib/nixshard-keys/node.key";
        mapFile = "/etc/nixshard/map.json"; bootstrapFile = "/etc/nixshard/bootstrap.toml";
      }}; }}""", """{
        unit = c.systemd.services.nixshard-node.serviceConfig;
        settings = c.services.nixshard.node.settings;
        failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      }""")
    assert isinstance(got, dict)
    assert got["failed"] == []
    unit = got["unit"]
    assert unit["ExecStart"] == (f"{NIXSHARD} node --config {STORE}nixshard-node.toml"
                                 " --key %d/node-key")
    assert unit["LoadCredential"] == ["node-key:/var/lib/nixshard-keys/node.key"]
    hardened(unit)
    assert "node_id" not in got["settings"]
    assert got["settings"]["map"].endswith("map.json")
    assert got["settings"]["bootstrap"].endswith("bootstrap.toml")
    ctx = check_command_line(unit["ExecStart"], got["settings"], tmp_path)
    assert ctx.params["key_path"] == Path("%d/node-key") and ctx.params["node_id"] is None
    assert ctx.params["map_path"] is not None and ctx.params["bootstrap_path"] is not None


@pytest.mark.nix
def test_package_option_needs_pkgs_nixshard() -> None:
    # As in nixpkgs: without pkgs.nixshard (no overlay) the default throws when used,
    # and setting services.nixshard.package works.
    got = eval_module(MINIMAL_CONFIG, """{
        default = (builtins.tryEval c.services.nixshard.package).success;
        defaultText = opts.package.defaultText.text;
      }""", pkgs='builtins.removeAttrs (pkgs [ ]) [ "nixshard" ]')
    assert got == {"default": False, "defaultText": "pkgs.nixshard"}
    config = MINIMAL_CONFIG.replace("services.nixshard = {",
                                    'services.nixshard = { package = drv "mine";', 1)
    got = eval_module(config, "c.systemd.services.nixshard-gateway.serviceConfig.ExecStart",
                      pkgs='builtins.removeAttrs (pkgs [ ]) [ "nixshard" ]')
    assert isinstance(got, str) and got.startswith(f"{STORE}mine/bin/nixshard serve ")


BASE = 'networking.hostName = "h"; nix.package = drv "nix";'


@pytest.mark.nix
@pytest.mark.parametrize(("nixshard", "message"), [
    ('node = { enable = true; networkFile = "/n"; dataDir = "/srv/data"; };',
     "a data directory outside /var/lib/ (/srv/data) needs a static services.nixshard.node.user"),
    ('node = { enable = true; networkFile = "/n"; dataDir = "data"; user = "u"; };',
     "the data directory must be an absolute path"),
    ('node = { enable = true; };', "set networkFile or acceptPublishers"),
    ('node = { enable = true; mapFile = "/m"; settings.key = "/k"; };', "use keyFile"),
    ('gateway = { enable = true; networkFile = "/n"; cacheDir = "/srv/cache"; };',
     "the cache directory must lie under /var/cache/"),
    ('gateway = { enable = true; networkFile = "/n"; settings.signing_key = "/k"; };',
     "instead of settings.signing_key"),
    ('postBuildHook.enable = true; push.signingKeyFile = "/k";', "set networkFile"),
    ('postBuildHook.enable = true; push.networkFile = "/n";', "needs a signing key"),
    ('postBuildHook.enable = true; push = { networkFile = "/n"; signingKeyFile = "/k"; '
     'settings.cache_secret = "/s"; };', "instead of settings.signing_key / settings.cache_secret"),
    ('postBuildHook = { enable = true; spoolDir = "spool"; }; '
     'push = { networkFile = "/n"; signingKeyFile = "/k"; };', "spoolDir must be an absolute path"),
    ('maintenance = { networkFile = "/n"; repair.enable = true; };',
     "repair and gc sign with a maintainer key"),
    ('maintenance.audit.enable = true;', "set networkFile (or enable the gateway"),
], ids=["data-outside-var-lib", "data-relative", "node-no-publisher", "node-key-in-settings",
        "cache-dir",
        "gateway-secret-in-settings", "push-no-network", "push-no-key", "push-secret-in-settings",
        "spool-relative", "repair-no-key", "audit-no-network"])
def test_module_assertions(nixshard: str, message: str) -> None:
    got = eval_module(f"{{ {BASE} services.nixshard = {{ {nixshard} }}; }}",
                      "map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions)")
    assert isinstance(got, list) and len(got) == 1, got
    assert message in got[0]


@pytest.mark.nix
def test_maintenance_alone_and_configfile() -> None:
    # A maintenance host without a gateway: its own network file, audit as the
    # gateway's user still (the scores stay where a gateway would read them);
    # push.configFile replaces the generated push.toml.
    got = eval_module(f"""{{ {BASE} services.nixshard = {{
        maintenance = {{ networkFile = "/etc/n.toml"; maintenanceKeyFile = "/k";
                         user = "ops"; audit.enable = true; gc.enable = true; }};
        gateway.user = "cache";
        postBuildHook = {{ enable = true; spoolDir = "/var/lib/spool"; }};
        push = {{ configFile = "/etc/nixshard/push.toml"; user = "builder"; group = "builder"; }};
      }}; }}""", """{
        audit = c.systemd.services.nixshard-audit.serviceConfig;
        gc = c.systemd.services.nixshard-gc.serviceConfig;
        spool = c.systemd.services.nixshard-push-spool.serviceConfig.ExecStart;
        hook = c.nix.settings.post-build-hook.text;
        users = c.users;
        failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      }""")
    assert isinstance(got, dict)
    assert got["failed"] == []
    assert got["audit"]["ExecStart"].startswith(f"{NIXSHARD} audit --network /etc/n.toml ")
    assert (got["audit"]["DynamicUser"], got["audit"]["User"]) == (False, "cache")
    assert "Group" not in got["audit"]
    assert (got["gc"]["DynamicUser"], got["gc"]["User"]) == (False, "ops")
    assert got["spool"] == (f"{NIXSHARD} push --config /etc/nixshard/push.toml"
                            " --spool /var/lib/spool")
    assert "--reuid=builder --regid=builder" in got["hook"]
    assert got["users"] == {}  # a user of one's own is not created


@pytest.mark.nix
def test_stand_in_module_system_catches_mistakes() -> None:
    # An option no module declares is reported, as nixpkgs refuses it...
    got = eval_module(f"""{{ {BASE} services.nixshard.gateway = {{
        enable = true; networkFile = "/n"; lisen = "0.0.0.0:1"; }}; }}""",
                      "evaluated.undeclared")
    assert got == ["services.nixshard.gateway.lisen"]
    # ...a value of the wrong type fails, and so do two different values of one priority.
    for config, error in [
        ('services.nixshard.gateway = { enable = true; networkFile = "/n"; listen = 80; };',
         "The option `services.nixshard.gateway.listen' is not of type `str'"),
        ('services.nixshard.gateway.enable = lib.mkMerge [ true false ];',
         "The option `services.nixshard.gateway.enable' has conflicting definition values"),
    ]:
        expr = module_expr(f"{{ {BASE} {config} }}",
                           "c.systemd.services.nixshard-gateway.serviceConfig.ExecStart")
        proc = run_nix(nix_tool("nix-instantiate"), "--eval", "--strict", "--json",
                       "--readonly-mode", "--argstr", "repo", str(REPO), "-E", expr)
        assert proc.returncode != 0
        assert error in proc.stderr


@pytest.mark.nix
def test_every_option_is_described_in_the_module_and_in_docs() -> None:
    got = eval_module(MINIMAL_CONFIG, 'optionList [ "services" "nixshard" ] opts')
    assert isinstance(got, list) and len(got) > 50
    docs = (REPO / "docs" / "nixos.md").read_text()
    undocumented = []
    for option in got:
        assert option["description"].strip(), f"{option['path']} has no description"
        relative = option["path"].removeprefix("services.nixshard.")
        if f"`{relative}`" not in docs:
            undocumented.append(relative)
    assert undocumented == [], f"docs/nixos.md does not name {undocumented}"


UNIT_SETTINGS = {"nixshard-gateway": "gateway", "nixshard-node": "node",
                 "nixshard-push-spool": "push"}


@pytest.mark.nix
@pytest.mark.parametrize("index", range(1, len(nix_blocks(NIXOS_DOC))))
def test_nixos_doc_example_evaluates(index: int, tmp_path: Path) -> None:
    # Each configuration example of docs/nixos.md (the first block is the flake)
    # evaluates with the module: no failed assertion, no undeclared option, and
    # every unit's command line is one the real `nixshard` accepts.
    example = tmp_path / "example.nix"
    example.write_text(nix_blocks(NIXOS_DOC)[index])
    (tmp_path / "network.toml").write_text("# a stand-in network file\n")
    config = f'lib.mkMerge [ {{ {BASE} }} (import {example}) ]'
    got = eval_module(config, """{
        failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
        undeclared = evaluated.undeclared;
        systemd = c.systemd;
        settings = builtins.mapAttrs (_: s: s.settings or null)
          { inherit (c.services.nixshard) gateway node push; };
      }""")
    assert isinstance(got, dict)
    assert got["failed"] == []
    assert got["undeclared"] == []
    services = got["systemd"]["services"]
    assert services, "the example runs no nixshard unit"
    for name, service in services.items():
        hardened(service["serviceConfig"])
        group = UNIT_SETTINGS.get(name)
        check_command_line(service["serviceConfig"]["ExecStart"],
                           got["settings"][group] if group else None, tmp_path)
