#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then lint, types, tests.
# Under CI=true a real-Nix test that would be skipped fails instead (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nix >/dev/null 2>&1; then
  echo "== installing Debian's nix-bin (the real-Nix tests need it)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nix-bin >/dev/null
fi

if ! command -v strace >/dev/null 2>&1; then
  echo "== installing strace (the post-build hook test proves it opens no connection)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq strace >/dev/null
fi

echo "== installing nixshard and its test tools"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
python3 -m ruff check .
echo "== mypy (strict on nix_formats, nix_records, storage_network and http_serving)"
python3 -m mypy nix_formats nix_records storage_network http_serving storage_node uploader cache_server nixshard
echo "== pytest"
python3 -m pytest -q -rs "$@"
