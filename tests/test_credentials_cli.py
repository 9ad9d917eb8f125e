"""`nixshard credentials add`: a hashed line appended (or replaced) atomically, mode 0600.

Invoked through ``credentials_group`` itself (the console command registers it as
``nixshard credentials``).
"""

from __future__ import annotations

import stat
from pathlib import Path

import argon2
import pytest
from click.testing import CliRunner, Result

from cache_server.credentials import DEFAULT_SCOPES, Scopes, parse_credentials
from nixshard.credentials_cli import credentials_group


def add(*args: str, password: str | None = "s3cret:with:colons") -> Result:
    """`credentials add ARGS` with ``password`` on stdin (--password-stdin), or with
    ``password=None`` and the args' own input handling."""
    extra = ["--password-stdin"] if password is not None else []
    return CliRunner().invoke(credentials_group, ["add", *args, *extra],
                              input=None if password is None else f"{password}\n")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_adds_a_hashed_line_to_a_new_private_file(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    res = add("ci", "--file", str(creds))
    assert res.exit_code == 0, res.output
    assert mode(creds) == 0o600
    parsed = parse_credentials(creds.read_text(), str(creds))
    assert list(parsed) == ["ci"]
    cred = parsed["ci"]
    assert cred.hashed and cred.secret.startswith("$argon2id$")
    assert cred.scopes == DEFAULT_SCOPES
    assert argon2.PasswordHasher().verify(cred.secret, "s3cret:with:colons")
    assert "s3cret" not in res.output and cred.secret not in res.output
    assert "added user 'ci' (scopes read,write)" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["credentials"]  # no temporary left


def test_scope_and_prefixes_keep_other_lines_and_comments(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("# uploaders\nlegacy:plain:pass\n\nalice:pw:read")  # no final newline
    creds.chmod(0o644)
    res = add("ci", "--file", str(creds), "--scope", "write", "--prefix", "myproject-",
              "--prefix", "tools-")
    assert res.exit_code == 0, res.output
    lines = creds.read_text().splitlines()
    assert lines[:4] == ["# uploaders", "legacy:plain:pass", "", "alice:pw:read"]
    assert lines[4].endswith(":write,prefix=myproject-,prefix=tools-")
    parsed = parse_credentials(creds.read_text(), "x")
    assert parsed["ci"].scopes == Scopes(False, True, ("myproject-", "tools-"))
    assert mode(creds) == 0o600  # the replacement is private whatever the old mode


def test_a_user_already_there_needs_replace(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("# team\nci:old-plain\nalice:pw\n")
    refused = add("ci", "--file", str(creds))
    assert refused.exit_code == 1
    assert "user 'ci' is already in" in refused.output and "(line 2)" in refused.output
    assert creds.read_text() == "# team\nci:old-plain\nalice:pw\n"
    res = add("ci", "--file", str(creds), "--scope", "read", "--replace", password="new")
    assert res.exit_code == 0, res.output
    assert "replaced user 'ci'" in res.output
    lines = creds.read_text().splitlines()
    assert lines[0] == "# team" and lines[2] == "alice:pw" and len(lines) == 3
    cred = parse_credentials(creds.read_text(), "x")["ci"]
    assert cred.line == 2 and cred.scopes == Scopes(True, False)
    assert argon2.PasswordHasher().verify(cred.secret, "new")


def test_prompts_twice_without_echo(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    res = CliRunner().invoke(credentials_group, ["add", "ci", "--file", str(creds)],
                             input="typed-pass\ntyped-pass\n")
    assert res.exit_code == 0, res.output
    assert "typed-pass" not in res.output
    cred = parse_credentials(creds.read_text(), "x")["ci"]
    assert argon2.PasswordHasher().verify(cred.secret, "typed-pass")
    mismatch = CliRunner().invoke(credentials_group, ["add", "bob", "--file", str(creds)],
                                  input="one\ntwo\n")  # then input runs out
    assert mismatch.exit_code != 0
    assert "bob" not in creds.read_text()


@pytest.mark.parametrize(("args", "password", "message"), [
    (["bad:user"], "x", "bad user name 'bad:user'"),
    (["ci", "--prefix", "a/b"], "x", "characters of a store-path name"),
    (["ci", "--scope", "admin"], "x", "'admin' is not one of"),
    (["ci"], "", "empty password"),
    (["ci"], "two\nlines", "line break"),
])
def test_bad_input_writes_nothing(tmp_path: Path, args: list[str], password: str,
                                  message: str) -> None:
    creds = tmp_path / "credentials"
    res = CliRunner().invoke(credentials_group, ["add", *args, "--file", str(creds),
                                                 "--password-stdin"], input=f"{password}\n")
    assert res.exit_code in (1, 2)
    assert message in res.output
    assert not creds.exists()


def test_a_malformed_file_is_left_alone(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text("ci:$argon2id$not-a-hash\n")
    res = add("bob", "--file", str(creds))
    assert res.exit_code == 1
    assert f"{creds} line 1: the secret starts with '$argon2' but is not a valid argon2 " \
           "hash; fix the file first" in res.output
    assert creds.read_text() == "ci:$argon2id$not-a-hash\n"
