"""The one process harness: local networks for tests, ``nixshard demo`` and benchmarks.

    from nixshard.localnet import LocalNetwork, new_publisher

    with LocalNetwork(root, new_publisher("test-1")[0]) as local:
        network = local.start_nodes(6, 4, 2)   # node-1 .. node-6, network.toml
        url = local.start_daemon()             # nixshard serve
        ...                                    # everything is stopped on exit

Single processes: :class:`NodeProcess` (one node, also a context manager),
:func:`start_nodes` / :func:`stop_all` (nodes without a network file), and
:class:`ManagedProcess` for any other local server with a health URL.
"""

from .network import LocalNetwork, env_with_nix_config, new_publisher
from .ports import free_port
from .process import (
    FAULT_ENV,
    LocalNetworkError,
    ManagedProcess,
    NodeProcess,
    start_all,
    start_nodes,
    stop_all,
)

__all__ = [
    "FAULT_ENV",
    "LocalNetwork",
    "LocalNetworkError",
    "ManagedProcess",
    "NodeProcess",
    "env_with_nix_config",
    "free_port",
    "new_publisher",
    "start_all",
    "start_nodes",
    "stop_all",
]
