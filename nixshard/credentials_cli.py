"""``nixshard credentials add``: a hashed line in the gateway's credentials file.

The file is the one ``nixshard serve --upload-credentials`` reads (format:
:mod:`cache_server.credentials`).  The password is prompted for (twice, not
echoed) or read from standard input (``--password-stdin``), hashed with
argon2id and never written or printed in clear.  The file is rewritten
atomically (a new file of mode 0600 replaces it; its owner and group are
kept when this process may set them), so a gateway starting meanwhile reads
the old file or the new one, never half of one.  The gateway reads the file
when it starts: restart it to use a new line.
"""

from __future__ import annotations

from pathlib import Path

import click

from cache_server.credentials import (
    Credential,
    CredentialsError,
    check_user,
    hash_password,
    parse_credentials,
    parse_scopes,
)

from .password_prompt import read_password
from .private_file import write_private


@click.group("credentials")
def credentials_group() -> None:
    """Manage the gateway's credentials file (nixshard serve --upload-credentials)."""


@credentials_group.command("add")
@click.argument("user")
@click.option("--file", "file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The credentials file (created, mode 0600, if it does not exist).")
@click.option("--scope", type=click.Choice(["read", "write", "read,write"]),
              default="read,write", show_default=True,
              help="What the credential may do: read (with --read-auth), write (upload), "
                   "or both.")
@click.option("--prefix", multiple=True, metavar="NAME",
              help="Limit the credential to store paths whose name (after the hash) starts "
                   "with NAME (repeatable: any of them).  [default: every store path]")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (one line) instead of prompting.")
@click.option("--replace", is_flag=True,
              help="Replace USER's line if the file has one (new password and scopes).")
def add_command(user: str, file: Path, scope: str, prefix: tuple[str, ...],
                password_stdin: bool, replace: bool) -> None:
    """Add USER with an argon2id-hashed password to a credentials file.

    Other lines and comments are kept.  Exit 1 when the file does not parse,
    USER is already in it (without --replace), or it cannot be written.
    """
    try:
        check_user(user)
        scopes = parse_scopes(",".join([scope, *(f"prefix={p}" for p in prefix)]))
    except CredentialsError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        text = file.read_text(encoding="utf-8") if file.exists() else ""
        existing = parse_credentials(text, str(file))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from exc
    except CredentialsError as exc:
        raise click.ClickException(f"{exc}; fix the file first (nothing was written)") from exc
    old = existing.get(user)
    if old is not None and not replace:
        raise click.ClickException(f"user {user!r} is already in {file} (line {old.line}): "
                                   "give --replace to change its password and scopes")
    password = read_password(password_stdin, "Password", confirm=True)
    line = Credential(user, hash_password(password), scopes).render()
    lines = text.splitlines()
    if old is not None:
        lines[old.line - 1] = line
    else:
        lines.append(line)
    try:
        write_private(file, "".join(f"{each}\n" for each in lines))
    except OSError as exc:
        raise click.ClickException(f"cannot write {file}: {exc}") from exc
    verb = "replaced" if old is not None else "added"
    click.echo(f"{file}: {verb} user {user!r} (scopes {scopes.text()}); restart the "
               "gateway to use it", err=True)
