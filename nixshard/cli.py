"""``nixshard``: the console command (see README: CLI reference)."""

from __future__ import annotations

import click

from cache_server.cli import serve_command
from storage_node.cli import node_command
from uploader.cli import push_command

from .audit_cli import audit_command
from .demo import demo_command
from .gc_cli import gc_command
from .network_cli import network_group


@click.group()
@click.version_option(package_name="nixshard")
def main() -> None:
    """nixshard: a Nix binary cache on k-of-n shards over untrusted storage nodes."""


main.add_command(node_command)
main.add_command(push_command)
main.add_command(serve_command)
main.add_command(network_group)
main.add_command(demo_command)
main.add_command(audit_command)
main.add_command(gc_command)
