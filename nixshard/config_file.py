"""``--config FILE``: one TOML file of defaults per program; flags given on the command line win.

Each key of the file is an option of the command, spelled as its long flag
without the dashes and with ``_`` for ``-`` (``--node-timeout`` ->
``node_timeout``); a repeatable option takes a list.  Values go through the
same checks as on the command line.  Secrets never sit in the file: the
options that need one take a file path (or read an environment variable).
Parsed with :mod:`tomllib`; applied through click's ``default_map``.
"""

from __future__ import annotations

import tomllib
from typing import Any

import click


def config_keys(command: click.Command) -> dict[str, str]:
    """TOML key -> click parameter name, for every option of ``command``."""
    keys: dict[str, str] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or param.name is None or param.hidden:
            continue
        for flag in param.opts:
            if flag.startswith("--"):
                keys[flag[2:].replace("-", "_")] = param.name
    keys.pop("config", None)
    return keys


def read_config(path: str, command: click.Command) -> dict[str, Any]:
    """The ``default_map`` for ``command`` from the TOML file ``path``.

    Raises:
        click.BadParameter: unreadable file, TOML syntax error, or a key that
            is not an option of the command (the message lists the known keys).
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}",
                                 param_hint="--config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}",
                                 param_hint="--config") from exc
    keys = config_keys(command)
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(keys))}", param_hint="--config")
    return {keys[key]: value for key, value in data.items()}


def with_config_file(command: click.Command) -> click.Command:
    """``command`` with a ``--config FILE`` option whose keys become its defaults."""

    def apply(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.default_map = {**(ctx.default_map or {}), **read_config(value, command)}

    command.params.insert(0, click.Option(
        ["--config"], type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
        callback=apply, metavar="FILE",
        help="TOML file of option defaults (keys: the long option names with _ for -); "
             "flags on the command line win."))
    return command
