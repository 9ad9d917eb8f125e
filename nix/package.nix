# nix/package.nix: the nixshard Python application (one console command, `nixshard`).
#
# Called with callPackage and the source tree (the repository root):
#
#   pkgs.callPackage ./package.nix { src = ./..; }        # from nix/flake.nix
#   pkgs.callPackage ./package.nix { src = ../.; }        # from nix/module.nix
#
# The version is read from pyproject.toml, and the runtime dependencies below
# are those of pyproject.toml's [project].dependencies under their nixpkgs
# attribute names (tests/test_nix_package.py checks that the two lists agree).
#
# Native pieces worth knowing about:
# - pyeclib's erasure code backend `isa_l_rs_cauchy` lives in ISA-L, which
#   liberasurecode dlopen()s at run time as `libisal.so.2`. nixpkgs'
#   liberasurecode is not linked against it, so the wrapper puts isa-l on
#   LD_LIBRARY_PATH; without it creating the codec raises
#   ECBackendNotAvailable. postInstall checks that the backend loads.
# - fastcdc must load its compiled Cython module (the pure-Python fallback is
#   ~100x slower); storage_network.coding.chunker imports `fastcdc.fastcdc_cy`
#   directly, so pythonImportsCheck below fails the build if it is missing.
{
  lib,
  python3Packages,
  isa-l,
  src,
}:

let
  pyproject = builtins.fromTOML (builtins.readFile (src + "/pyproject.toml"));
in
python3Packages.buildPythonApplication {
  pname = "nixshard";
  version = pyproject.project.version;
  pyproject = true;

  # Drop .git, result symlinks, editor backups and build leftovers.
  src = lib.cleanSource src;

  build-system = [ python3Packages.setuptools ];

  dependencies = [
    python3Packages.aiohttp
    python3Packages.pynacl
    python3Packages.zstandard
    python3Packages.pyeclib
    python3Packages.fastcdc
    python3Packages.httpx
    python3Packages.click
    python3Packages.tomli-w
    python3Packages.prometheus-client
    python3Packages.brotli
    python3Packages.aiobotocore
    python3Packages.cryptography
    python3Packages.argon2-cffi
    python3Packages.blake3
    python3Packages.numpy
  ];

  makeWrapperArgs = [
    "--prefix"
    "LD_LIBRARY_PATH"
    ":"
    (lib.makeLibraryPath [ isa-l ])
  ];

  # Smoke test at build time (runs although doCheck is off): the default
  # erasure code backend can be instantiated with the library path the
  # wrapper sets.
  postInstall = ''
    LD_LIBRARY_PATH=${lib.makeLibraryPath [ isa-l ]} ${python3Packages.python.interpreter} -c \
      'from pyeclib.ec_iface import ECDriver; ECDriver(k=4, m=2, ec_type="isa_l_rs_cauchy")'
  '';

  # The test suite needs a real `nix` binary (nix-build, nix copy, a store
  # it can write to) and free network ports for its storage nodes and
  # daemons: neither exists in the build sandbox. CI runs it outside Nix
  # (scripts/test.sh).
  doCheck = false;

  # Runs even with doCheck = false: the compiled chunker and the CLI import.
  pythonImportsCheck = [
    "nixshard.cli"
    "storage_network.coding.chunker"
    "storage_network.coding.codec"
    "cache_server.cli"
    "storage_node.cli"
    "uploader.cli"
  ];

  meta = {
    description = pyproject.project.description;
    mainProgram = "nixshard";
    platforms = lib.platforms.linux;
  };
}
