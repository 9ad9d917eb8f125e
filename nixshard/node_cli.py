"""``nixshard node``: run a storage node, or ``nixshard node join-request``.

``nixshard node [OPTIONS]`` runs a node (:func:`storage_node.cli.node_command`,
unchanged); a first argument naming a subcommand runs that instead:

``join-request``  make the node's ed25519 key if absent and print the signed
                  entry a node operator hands to the maintainers
                  (:mod:`storage_network.network_map.join_request`), who add it
                  with ``nixshard map propose --add-node FILE``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from storage_network.errors import MapError
from storage_network.network_map.join_request import make_join_request
from storage_node.identity import IdentityError, load_or_create_identity

_SUBCOMMAND = "nixshard.node.subcommand"


class NodeCommands(click.Group):
    """A group that is also the command ``run``: it has ``run``'s options, and a bare
    invocation runs ``run``.

    ``nixshard node --data D ...`` is parsed and run as ``run`` (``ctx.params`` are
    ``run``'s, so ``--config`` defaults and introspection work as before); only a
    first argument that names a subcommand goes to that subcommand.
    """

    def __init__(self, run: click.Command, **attrs: Any) -> None:
        super().__init__(name=run.name, help=run.help, params=run.params,
                         epilog=run.epilog, subcommand_metavar="[COMMAND [ARGS]...]",
                         **attrs)
        self.run = run

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """``run``'s parse, unless the first argument names a subcommand."""
        if args and args[0] in self.commands:
            ctx.meta[_SUBCOMMAND] = (args[0], list(args[1:]))
            return []
        return self.run.parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run ``run`` with the parsed options, or the subcommand."""
        sub = ctx.meta.pop(_SUBCOMMAND, None)
        if sub is None:
            return self.run.invoke(ctx)
        name, args = sub
        command = self.commands[name]
        with command.make_context(name, args, parent=ctx) as sub_ctx:
            return command.invoke(sub_ctx)


def node_commands(run: click.Command) -> NodeCommands:
    """``nixshard node``: ``run`` plus the node subcommands (listed in its help)."""
    group = NodeCommands(run)
    group.add_command(join_request_command)
    return group


@click.command("join-request")
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The node's key file; made (mode 0600) when absent.  Start the node "
                   "with the same --key.")
@click.option("--url", required=True, help="The node's public base URL, http(s)://host:port.")
@click.option("--operator", required=True, help="Who runs the node (a failure domain).")
@click.option("--zone", default="", help="Site or rack inside the operator.")
@click.option("--weight", type=click.FloatRange(min=0, min_open=True, max=1e6), default=1.0,
              show_default=True, help="Capacity weight.")
def join_request_command(key_path: Path, url: str, operator: str, zone: str,
                         weight: float) -> None:
    """Print this node's signed join request (JSON) for the maintainers."""
    try:
        identity, created = load_or_create_identity(key_path)
        request = make_join_request(identity.signing_key, url, operator, zone, weight)
    except IdentityError as exc:
        raise click.ClickException(exc.message) from exc
    except MapError as exc:
        raise click.ClickException(str(exc)) from exc
    if created:
        click.echo(f"made the node key {key_path} (node id {identity.node_id}); keep it "
                   "safe, it is this node's identity", err=True)
    click.echo(json.dumps(request, indent=1, sort_keys=True))
