"""`nixshard use URL --key KEY`: the nix.conf lines, idempotent; the netrc entry; what the
real `nix` makes of the file written."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from nix_formats.keys import SecretKey
from nixshard.nix_conf import NixConf, NixConfError, parse_line
from nixshard.use_cli import default_nix_conf, netrc_with_entry, use_command

KEY = SecretKey.generate("usecache-1").public_key().text()
OTHER_KEY = SecretKey.generate("usecache-2").public_key().text()
URL = "http://gateway.lan:5000"


def use(*args: str, env: dict[str, str] | None = None, password: str | None = None) -> Result:
    """`nixshard use ARGS`; with ``password``, it is given on standard input."""
    extra = ["--password-stdin"] if password is not None else []
    return CliRunner().invoke(use_command, [*args, *extra], env=env,
                              input=None if password is None else password + "\n")


def settings(path: Path) -> dict[str, list[str]]:
    return NixConf.read(path).settings()


def test_a_fresh_file_gets_every_line_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "sub" / "nix.conf"
    res = use(URL + "/", "--key", KEY, "--nix-conf", str(conf))
    assert res.exit_code == 0, res.output
    text = conf.read_text()
    assert text.splitlines() == [
        f"# added by `nixshard use {URL}`",
        f"extra-substituters = {URL}",
        f"extra-trusted-public-keys = {KEY}",
        "fallback = true",
        "connect-timeout = 5",
    ]
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert "added         extra-substituters = http://gateway.lan:5000" in res.output
    assert "trusted-users" in res.output  # a user's file: says when the daemon ignores it
    again = use(URL, "--key", KEY, "--nix-conf", str(conf))
    assert again.exit_code == 0, again.output
    assert conf.read_text() == text
    assert "nothing to change" in again.output
    assert "added" not in again.output


def test_values_in_effect_through_other_lines_are_not_written_again(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    (tmp_path / "keys.conf").write_text(f"trusted-public-keys = cache.nixos.org-1:x {KEY}\n")
    conf.write_text(f"binary-caches = https://cache.nixos.org/ {URL}  # old name\n"
                    "include keys.conf\n"
                    "fallback = false\n"
                    "connect-timeout = 2\n")
    before = conf.read_text()
    res = use(URL, "--key", KEY, "--nix-conf", str(conf))
    assert res.exit_code == 0, res.output
    assert conf.read_text() == before
    assert "kept          fallback = false" in res.output
    assert "your setting, left alone; `nixshard use` would write true" in res.output
    assert "present       connect-timeout = 2" not in res.output
    assert "kept          connect-timeout = 2" in res.output


def test_a_second_gateway_and_key_join_the_last_extra_lines(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    assert use(URL, "--key", KEY, "--nix-conf", str(conf)).exit_code == 0
    res = use("https://cache2.example", "--key", OTHER_KEY, "--nix-conf", str(conf))
    assert res.exit_code == 0, res.output
    lines = conf.read_text().splitlines()
    assert f"extra-substituters = {URL} https://cache2.example" in lines
    assert f"extra-trusted-public-keys = {KEY} {OTHER_KEY}" in lines
    assert sum(line.startswith("fallback") for line in lines) == 1
    assert settings(conf)["substituters"] == [URL, "https://cache2.example"]


def test_a_plain_substituters_line_after_an_extra_line_is_not_undone(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text("extra-substituters = http://old:5000\nsubstituters = https://cache.nixos.org\n")
    assert use(URL, "--key", KEY, "--nix-conf", str(conf)).exit_code == 0
    assert conf.read_text().splitlines()[:2] == [
        "extra-substituters = http://old:5000", "substituters = https://cache.nixos.org"]
    assert settings(conf)["substituters"] == ["https://cache.nixos.org", URL]


def test_another_key_of_the_same_name_is_pointed_out(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    stale = SecretKey.generate("usecache-1").public_key().text()
    conf.write_text(f"trusted-public-keys = {stale}\n")
    res = use(URL, "--key", KEY, "--nix-conf", str(conf))
    assert res.exit_code == 0, res.output
    assert f"trusted-public-keys also holds {stale}" in res.output
    assert settings(conf)["trusted-public-keys"] == [stale, KEY]


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    conf.write_text("sandbox = true\n")
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--dry-run",
              "--user", "ci", password="s3cret")
    assert res.exit_code == 0, res.output
    assert conf.read_text() == "sandbox = true\n"
    assert not (tmp_path / "netrc").exists()
    assert "would add     extra-substituters" in res.output
    assert f"would then read:\n\nsandbox = true\n\n# added by `nixshard use {URL}`" in res.output
    assert "s3cret" not in res.output


def test_key_from_a_file_and_bad_keys_and_urls(tmp_path: Path) -> None:
    (tmp_path / "public.key").write_text(KEY + "\n")
    conf = tmp_path / "nix.conf"
    assert use(URL, "--key", str(tmp_path / "public.key"), "--nix-conf",
               str(conf)).exit_code == 0
    assert KEY in settings(conf)["trusted-public-keys"]
    secret = SecretKey.generate("usecache-1").text()
    res = use(URL, "--key", secret, "--nix-conf", str(conf))
    assert res.exit_code == 2 and "is 64 bytes, expected 32 (is it a secret key?)" in res.output
    res = use(URL, "--key", str(tmp_path / "missing.key"), "--nix-conf", str(conf))
    assert res.exit_code == 2 and "cannot read" in res.output
    for url, message in (("ftp://x", "is not an http:// or https:// URL"),
                         ("http://u:p@gw:5000", "credentials never go in the URL"),
                         ("http://gw:5000?priority=10", "no ?query")):
        res = use(url, "--key", KEY, "--nix-conf", str(conf))
        assert res.exit_code == 2 and message in res.output, res.output


def test_netrc_entry_written_private_and_replaced(tmp_path: Path) -> None:
    conf = tmp_path / "nix.conf"
    netrc = tmp_path / "creds" / "netrc"
    netrc.parent.mkdir()
    netrc.write_text("machine other.host login a password b\n"
                     "machine gateway.lan\n  login old\n  password older\n")
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--netrc", str(netrc),
              "--user", "ci", password="pw1")
    assert res.exit_code == 0, res.output
    assert netrc.read_text() == ("machine other.host login a password b\n"
                                 "machine gateway.lan login ci password pw1\n")
    assert stat.S_IMODE(netrc.stat().st_mode) == 0o600
    assert settings(conf)["netrc-file"] == [str(netrc)]
    assert "pw1" not in res.output
    # again without --netrc: the file nix.conf names is used; same password: nothing changes
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--user", "ci", password="pw1")
    assert res.exit_code == 0 and "nothing to change" in res.output, res.output
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--netrc", str(tmp_path / "n2"),
              "--user", "ci", password="pw1")
    assert res.exit_code == 1
    assert f"already names netrc-file = {netrc}; Nix reads one netrc file" in res.output
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--netrc", str(netrc))
    assert res.exit_code == 2 and "give --user too" in res.output
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--user", "ci", password="")
    assert res.exit_code == 1 and "empty password" in res.output


def test_a_world_readable_netrc_is_replaced_by_a_file_private_from_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new netrc is 0600 before it is renamed over the old 0644 one: the password is
    never in a file others may read, not even for a moment; a symlink is written through.
    The nix.conf keeps its own mode."""
    conf = tmp_path / "nix.conf"
    conf.write_text("fallback = true\n")
    conf.chmod(0o640)
    real = tmp_path / "real-netrc"
    real.write_text("machine other.host login a password b\n")
    real.chmod(0o644)
    netrc = tmp_path / "netrc"
    netrc.symlink_to(real)
    renamed: dict[str, int] = {}
    replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renamed[Path(dst).name] = stat.S_IMODE(os.stat(src).st_mode)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    res = use(URL, "--key", KEY, "--nix-conf", str(conf), "--netrc", str(netrc),
              "--user", "ci", password="pw1")
    assert res.exit_code == 0, res.output
    assert renamed == {"real-netrc": 0o600, "nix.conf": 0o640}
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert netrc.is_symlink()
    assert real.read_text() == ("machine other.host login a password b\n"
                                "machine gateway.lan login ci password pw1\n")


def test_netrc_text_rules() -> None:
    text, status = netrc_with_entry("default login anon password x\n", "gw", "u", "p")
    assert (text, status) == ("machine gw login u password p\ndefault login anon password x\n",
                              "added")
    assert netrc_with_entry(text, "gw", "u", "p") == (text, "present")
    assert netrc_with_entry(text, "gw", "u", "q")[1] == "replaced"
    with pytest.raises(NixConfError, match="one word without quotes"):
        netrc_with_entry("", "gw", "u", "two words")
    with pytest.raises(NixConfError, match="macdef"):
        netrc_with_entry("macdef init\n", "gw", "u", "p")


def test_a_nixos_generated_file_is_refused(tmp_path: Path) -> None:
    # NixOS: /etc/nix/nix.conf -> /etc/static/nix/nix.conf -> /nix/store/...-nix.conf
    conf = tmp_path / "nix.conf"
    conf.symlink_to("/etc/static/nix/nix.conf")
    res = use(URL, "--key", KEY, "--nix-conf", str(conf))
    assert res.exit_code == 1
    assert "is generated by NixOS" in res.output
    assert "services.nixshard.substituter" in res.output
    assert conf.is_symlink()


def test_parse_line_and_default_targets(tmp_path: Path) -> None:
    assert parse_line("  # only a comment") is None
    assert parse_line("extra-substituters = a b # c") == ("extra-substituters", "a b")
    assert parse_line("!include /etc/nix/more.conf") == ("!include", "/etc/nix/more.conf")
    with pytest.raises(NixConfError, match="illegal configuration line"):
        parse_line("substituters http://x")
    assert default_nix_conf(0, {}) == Path("/etc/nix/nix.conf")
    assert default_nix_conf(0, {"NIX_CONF_DIR": "/opt/nix"}) == Path("/opt/nix/nix.conf")
    assert default_nix_conf(1000, {"XDG_CONFIG_HOME": "/home/u/.cfg"}) == Path(
        "/home/u/.cfg/nix/nix.conf")
    assert default_nix_conf(1000, {}) == Path.home() / ".config" / "nix" / "nix.conf"


@pytest.mark.nix
def test_the_real_nix_reads_what_root_gets(tmp_path: Path) -> None:
    """As root without --nix-conf the target is $NIX_CONF_DIR/nix.conf, the daemon's file:
    it also gets trusted-substituters; `nix show-config` then has every value."""
    if os.geteuid() != 0:
        pytest.skip("the system file is the default target only for root")
    conf_dir = tmp_path / "etc-nix"
    conf_dir.mkdir()
    (conf_dir / "nix.conf").write_text("substituters = https://cache.nixos.org\n")
    res = use(URL, "--key", KEY, "--user", "reader", env={"NIX_CONF_DIR": str(conf_dir)},
              password="pw")
    assert res.exit_code == 0, res.output
    assert f"{conf_dir}/nix.conf:" in res.output
    assert "restart it" in res.output
    assert (conf_dir / "netrc").read_text() == "machine gateway.lan login reader password pw\n"
    nix = shutil.which("nix")
    assert nix is not None
    clean = {k: v for k, v in os.environ.items() if k != "NIX_CONFIG"}
    out = subprocess.run(
        [nix, "--extra-experimental-features", "nix-command", "show-config", "--json"],
        env={**clean, "NIX_CONF_DIR": str(conf_dir), "XDG_CONFIG_HOME": str(tmp_path / "none"),
             "XDG_CONFIG_DIRS": str(tmp_path / "none")},
        capture_output=True, text=True, check=True)
    shown = {name: entry["value"] for name, entry in json.loads(out.stdout).items()}
    assert shown["substituters"] == ["https://cache.nixos.org", URL]
    assert shown["trusted-substituters"] == [URL]
    assert KEY in shown["trusted-public-keys"]
    assert shown["fallback"] is True
    assert shown["connect-timeout"] == 5
    assert shown["netrc-file"] == str(conf_dir / "netrc")
