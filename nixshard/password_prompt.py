"""The password a command is given: one line of standard input, or asked for on the terminal."""

from __future__ import annotations

import sys

import click


def read_password(from_stdin: bool, prompt: str, *, confirm: bool = False) -> str:
    """The password: one line of standard input (its line end dropped) when
    ``from_stdin`` (``--password-stdin``), else asked for on the terminal with
    ``prompt`` (not echoed; twice when ``confirm``).

    Raises:
        click.ClickException: empty, or holding a line break or NUL character.
    """
    if from_stdin:
        text = sys.stdin.read()
        password = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
    else:
        password = str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm,
                                    err=True))
    if not password:
        raise click.ClickException("empty password")
    if any(c in password for c in "\r\n\0"):
        raise click.ClickException("the password has a line break or NUL character "
                                   "(--password-stdin reads one line)")
    return password
