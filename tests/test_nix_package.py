"""The flake, package and module of nix/, evaluated against stand-ins for nixpkgs.

nixpkgs is not available here, so the flake, package and module are
evaluated against small stand-ins (``STAND_INS`` below) that implement just
the library functions they call: the checks cover our logic (attribute
names, argv, settings, hardening), not nixpkgs' module system.  Every test
drives the real ``nix-instantiate`` (marked ``nix``).
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from tests.nix_tools import REPO, nix_eval

# Stand-ins for nixpkgs: the library functions the files call, with the same
# results for the inputs used here. A module merge is a recursive update that
# concatenates lists; mkIf false contributes nothing; priorities are ignored.
STAND_INS = r"""
let
  drv = name: { outPath = "/nix/store/00000000000000000000000000000000-${name}"; inherit name; };
  hasPrefix = p: s: builtins.substring 0 (builtins.stringLength p) s == p;
  hasSuffix = p: s:
    let n = builtins.stringLength s; k = builtins.stringLength p;
    in n >= k && builtins.substring (n - k) k s == p;
  merge = a: b: a // builtins.mapAttrs (name: v:
    if !(a ? ${name}) then v
    else if builtins.isList v then a.${name} ++ v
    else if builtins.isAttrs v && builtins.isAttrs a.${name} then merge a.${name} v
    else v) b;
  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption { type = types.bool; default = false; description = name; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    types = {
      bool = "bool"; str = "str"; path = "path"; package = "package";
      nullOr = t: "nullOr ${t}"; listOf = t: "listOf ${t}";
      submodule = m: { submodule = m; };
    };
    mkIf = cond: value: if cond then value else if builtins.isList value then [ ] else { };
    mkDefault = value: value;
    mkMerge = builtins.foldl' merge { };
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
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
    escapeShellArg = s: "'${s}'";
    makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/bin") ps);
    makeLibraryPath = ps: builtins.concatStringsSep ":" (map (p: "${p}/lib") ps);
    cleanSource = src: src;
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  };
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
    nixshard = drv "nixshard";
    callPackage = fn: args: drv "called" // { inherit fn args; };
    formats.toml = { }: {
      type = "toml";
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


MODULE_CONFIG = """{
  nix.package = drv "nix";
  services.nixshard = {
    package = drv "nixshard";
    gateway = {
      enable = true;
      networkFile = "/etc/nixshard/network.toml";
      listen = "0.0.0.0:80";
      cacheDir = "/var/cache/nixshard-gateway";
      signingKeyFile = "/run/secrets/signing.key";
      uploadCredentialsFile = "/run/secrets/upload";
      cacheSecretFile = "/run/secrets/cache-secret";
      openFirewall = true;
      # As the module system would merge them (the module sets these with mkDefault).
      settings = { network = "/etc/nixshard/network.toml"; listen = "0.0.0.0:80";
                   cache_dir = "/var/cache/nixshard-gateway"; };
    };
    node = {
      enable = true;
      dataDir = "/var/lib/nixshard-node";
      listen = "0.0.0.0:9001";
      networkFile = "/etc/nixshard/network.toml";
      acceptPublishers = [ "extra-1:AAAA" ];
      nodeId = "node-3";
      openFirewall = true;
      settings = { data = "/var/lib/nixshard-node"; listen = "0.0.0.0:9001";
                   network = "/etc/nixshard/network.toml"; accept_publisher = [ "extra-1:AAAA" ];
                   node_id = "node-3"; };
    };
    postBuildHook = { enable = true; configFile = "/etc/nixshard/push.toml"; };
    substituter = { enable = true; url = "http://127.0.0.1:80"; publicKey = "mycache-1:BBBB"; };
  };
}"""


@pytest.mark.nix
def test_module_with_stand_in_lib() -> None:
    got = nix_eval(STAND_INS + """{ repo }: let
        module = import (/. + repo + "/nix/module.nix") {
          config = """ + MODULE_CONFIG + """;
          inherit lib; pkgs = pkgs [ ];
        };
        opts = module.options.services.nixshard;
        c = module.config;
      in {
        options = builtins.mapAttrs (_: o: builtins.attrNames o)
          (builtins.removeAttrs opts [ "package" ]);
        gateway = c.systemd.services.nixshard-gateway.serviceConfig;
        gatewayWantedBy = c.systemd.services.nixshard-gateway.wantedBy;
        node = c.systemd.services.nixshard-node.serviceConfig;
        gatewaySettings = c.services.nixshard.gateway.settings;
        nodeSettings = c.services.nixshard.node.settings;
        substituterUrl = c.services.nixshard.substituter.url;
        ports = c.networking.firewall.allowedTCPPorts;
        assertions = map (a: a.assertion) c.assertions;
        hook = c.nix.settings.post-build-hook.text;
        hookFile = "${/. + repo + "/nix/post-build-hook.sh"}";
        substituters = c.nix.settings.substituters;
        trustedKeys = c.nix.settings.trusted-public-keys;
      }""", repo=str(REPO))
    assert isinstance(got, dict)
    assert got["options"] == {
        "gateway": ["cacheDir", "cacheSecretFile", "enable", "listen", "networkFile",
                    "openFirewall", "settings", "signingKeyFile", "uploadCredentialsFile"],
        "node": ["acceptPublishers", "dataDir", "enable", "listen", "networkFile",
                 "nodeId", "openFirewall", "settings"],
        "postBuildHook": ["configFile", "enable"],
        "substituter": ["enable", "publicKey", "url"],
    }
    store = "/nix/store/00000000000000000000000000000000-"
    gateway = got["gateway"]
    assert gateway["ExecStart"] == (
        f"{store}nixshard/bin/nixshard serve --config {store}nixshard-gateway.toml"
        " --signing-key %d/signing-key --upload-credentials %d/upload-credentials"
        " --cache-secret %d/cache-secret")
    assert gateway["LoadCredential"] == ["signing-key:/run/secrets/signing.key",
                                         "upload-credentials:/run/secrets/upload",
                                         "cache-secret:/run/secrets/cache-secret"]
    assert gateway["CacheDirectory"] == "nixshard-gateway"
    # Port 80 is the one exception to "no capabilities".
    assert gateway["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert got["gatewayWantedBy"] == ["multi-user.target"]
    node = got["node"]
    assert node["ExecStart"] == (
        f"{store}nixshard/bin/nixshard node --config {store}nixshard-node.toml")
    assert node["StateDirectory"] == "nixshard-node"
    assert node["CapabilityBoundingSet"] == ""
    for unit in (gateway, node):
        assert unit["DynamicUser"] is True
        assert unit["ProtectSystem"] == "strict"
        assert unit["RestrictAddressFamilies"] == ["AF_INET", "AF_INET6", "AF_UNIX"]
        assert "@system-service" in unit["SystemCallFilter"]
        assert unit["MemoryDenyWriteExecute"] is True
        assert unit["Restart"] == "on-failure"
        for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges",
                    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
                    "LockPersonality", "RestrictNamespaces"):
            assert unit[key] is True, key
    assert got["gatewaySettings"] == {"network": "/etc/nixshard/network.toml",
                                      "listen": "0.0.0.0:80",
                                      "cache_dir": "/var/cache/nixshard-gateway"}
    assert got["nodeSettings"] == {"data": "/var/lib/nixshard-node", "listen": "0.0.0.0:9001",
                                   "network": "/etc/nixshard/network.toml",
                                   "accept_publisher": ["extra-1:AAAA"], "node_id": "node-3"}
    assert got["substituterUrl"] == "http://127.0.0.1:80"
    assert got["ports"] == [80, 9001]
    assert got["assertions"] == [True, True, True, True]
    assert f"NIXSHARD_BIN={store}nixshard/bin/nixshard" in got["hook"]
    assert "NIXSHARD_PUSH_CONFIG='/etc/nixshard/push.toml'" in got["hook"]
    assert f"bin/bash {got['hookFile']}" in got["hook"]
    assert got["substituters"] == ["http://127.0.0.1:80"]
    assert got["trustedKeys"] == ["mycache-1:BBBB"]
