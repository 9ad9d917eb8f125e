"""``nixshard gc``: being written (see issue 3)."""

from __future__ import annotations

import click


@click.command("gc")
def gc_command() -> None:
    """Not ready yet."""
    raise click.ClickException("nixshard gc is not ready yet")
