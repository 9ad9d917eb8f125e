"""``nixshard``: the console command (see README: CLI reference)."""

from __future__ import annotations

import click

from cache_server.cli import serve_command
from storage_node.cli import node_command
from uploader.cli import push_command

from .audit_cli import audit_command
from .config_file import with_config_file
from .credentials_cli import credentials_group
from .demo import demo_command
from .doctor_cli import doctor_command
from .durability_cli import durability_command
from .gc_cli import gc_command
from .key_cli import key_group
from .map_cli import map_group
from .network_cli import network_group
from .node_cli import node_commands
from .pin_cli import pin_group
from .repair_cli import repair_command
from .status_cli import status_command
from .use_cli import use_command


@click.group()
@click.version_option(package_name="nixshard")
def main() -> None:
    """nixshard: a Nix binary cache on k-of-n shards over untrusted storage nodes."""


main.add_command(node_commands(with_config_file(node_command)))
main.add_command(with_config_file(push_command))
main.add_command(with_config_file(serve_command))
main.add_command(network_group)
main.add_command(map_group)
main.add_command(key_group)
main.add_command(credentials_group)
main.add_command(pin_group)
main.add_command(use_command)
main.add_command(doctor_command)
main.add_command(demo_command)
main.add_command(audit_command)
main.add_command(gc_command)
main.add_command(repair_command)
main.add_command(status_command)
main.add_command(durability_command)
