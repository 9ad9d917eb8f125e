"""``nixshard audit``: being written (see issue 3)."""

from __future__ import annotations

import click


@click.command("audit")
def audit_command() -> None:
    """Not ready yet."""
    raise click.ClickException("nixshard audit is not ready yet")
