"""`nixshard key generate-cache-secret` and `nixshard network init --private`."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nix_formats.keys import SecretKey
from nixshard.cli import main
from storage_network import CacheSecret, Keyring
from storage_network.config import load_network

URLS = [f"http://127.0.0.1:{9300 + i}" for i in range(1, 7)]


def generate(*args: str) -> Result:
    """Run `nixshard key generate-cache-secret ARGS`."""
    return CliRunner().invoke(main, ["key", "generate-cache-secret", *args])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- generate-cache-secret ----------------------------------------------------------------


def test_prints_one_parseable_line() -> None:
    res = generate("cli-test-1")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == 1
    secret = CacheSecret.parse(lines[0])
    assert secret.name == "cli-test-1"
    assert len(secret.secret) == 32
    again = generate("cli-test-1")
    assert CacheSecret.parse(again.stdout).secret != secret.secret


def test_output_writes_a_private_keyring(tmp_path: Path) -> None:
    out = tmp_path / "cache.keyring"
    res = generate("cli-test-2", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert res.stdout == ""  # the secret is not echoed
    assert mode(out) == 0o600
    ring = Keyring.parse(out.read_text())
    assert [s.name for s in ring] == ["cli-test-2"]
    assert ring.current.secret.hex() not in res.output
    assert ring.current.text().split(":")[1] not in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["cache.keyring"]


def test_output_is_private_despite_a_stale_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "cache.keyring"
    stale = tmp_path / ".cache.keyring.tmp"
    stale.write_text("left over\n")
    stale.chmod(0o644)
    res = generate("cli-test-4", "-o", str(out))
    assert res.exit_code == 0, res.output
    assert Keyring.parse(out.read_text()).current.name == "cli-test-4"
    assert mode(out) == 0o600


def test_output_refuses_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "cache.keyring"
    out.write_text("keep me\n")
    res = generate("cli-test-3", "--output", str(out))
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert f"{out} exists: rotate with --keyring {out}" in res.output
    assert out.read_text() == "keep me\n"


def test_keyring_rotation_puts_the_new_secret_first(tmp_path: Path) -> None:
    ring_file = tmp_path / "cache.keyring"
    old = [CacheSecret.generate("cli-old-1"), CacheSecret.generate("cli-old-2")]
    ring_file.write_text("# my keyring\n" + Keyring(old).text())
    ring_file.chmod(0o644)
    res = generate("cli-new", "--keyring", str(ring_file))
    assert res.exit_code == 0, res.output
    assert "new secret 'cli-new' first, 2 older kept" in res.output
    assert res.stdout == ""
    ring = Keyring.parse(ring_file.read_text())
    assert [s.name for s in ring] == ["cli-new", "cli-old-1", "cli-old-2"]
    assert [s.secret for s in ring][1:] == [s.secret for s in old]
    assert ring.current.secret not in [s.secret for s in old]
    assert mode(ring_file) == 0o600
    # and once more
    res = generate("cli-newer", "--keyring", str(ring_file))
    assert res.exit_code == 0, res.output
    assert [s.name for s in Keyring.parse(ring_file.read_text())] == \
        ["cli-newer", "cli-new", "cli-old-1", "cli-old-2"]


def test_keyring_refuses_a_duplicate_name(tmp_path: Path) -> None:
    ring_file = tmp_path / "cache.keyring"
    text = Keyring([CacheSecret.generate("cli-a"), CacheSecret.generate("cli-b")]).text()
    ring_file.write_text(text)
    res = generate("cli-b", "--keyring", str(ring_file))
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert f"{ring_file} already holds a secret named 'cli-b'" in res.output
    assert ring_file.read_text() == text


def test_keyring_must_exist(tmp_path: Path) -> None:
    res = generate("cli-c", "--keyring", str(tmp_path / "none"))
    assert res.exit_code == 2
    assert "does not exist" in res.output
    assert not (tmp_path / "none").exists()


def test_keyring_that_does_not_parse(tmp_path: Path) -> None:
    ring_file = tmp_path / "cache.keyring"
    ring_file.write_text("garbage\n")
    res = generate("cli-d", "--keyring", str(ring_file))
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "line 1: a cache secret is `name:base64`, found no colon" in res.output
    assert ring_file.read_text() == "garbage\n"


def test_output_and_keyring_together_are_refused(tmp_path: Path) -> None:
    ring_file = tmp_path / "cache.keyring"
    ring_file.write_text(CacheSecret.generate("cli-e").text() + "\n")
    res = generate("cli-f", "-o", str(tmp_path / "new"), "--keyring", str(ring_file))
    assert res.exit_code == 2
    assert "not both" in res.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name", ["bad name", "-dash", "x" * 65, "a:b", "a/b"])
def test_bad_name(tmp_path: Path, name: str) -> None:
    out = tmp_path / "cache.keyring"
    res = generate("-o", str(out), "--", name)
    assert res.exit_code == 1, res.output
    assert "cache secret name" in res.output and "want 1-64 of" in res.output
    assert isinstance(res.exception, SystemExit)  # a click error, not a crash
    assert not out.exists()


def test_bad_name_on_stdout() -> None:
    res = generate("no spaces please")
    assert res.exit_code == 1
    assert res.stdout == ""
    assert "Error: a cache secret name of 16 characters: want 1-64 of" in res.output


# --- network init --private ---------------------------------------------------------------


def init_args(out: Path, *extra: str) -> list[str]:
    publisher = SecretKey.generate("cli-pub-1").public_key().text()
    args = ["network", "init", "-k", "4", "-m", "2", "--publisher", publisher, "-o", str(out)]
    for url in URLS:
        args += ["--node", url]
    return args + list(extra)


def test_network_init_private(tmp_path: Path) -> None:
    out = tmp_path / "network.toml"
    res = CliRunner().invoke(main, init_args(out, "--private"))
    assert res.exit_code == 0, res.output
    assert ", private" in res.output
    doc = tomllib.loads(out.read_text())
    assert doc["private"] is True
    assert "private = true" in out.read_text()
    network = load_network(out)
    assert network.private is True
    assert (network.k, network.m, len(network.nodes)) == (4, 2, 6)


def test_network_init_public_has_no_private_key(tmp_path: Path) -> None:
    out = tmp_path / "network.toml"
    res = CliRunner().invoke(main, init_args(out))
    assert res.exit_code == 0, res.output
    assert "private" not in res.output
    assert "private" not in out.read_text()
    assert "private" not in tomllib.loads(out.read_text())
    assert load_network(out).private is False
