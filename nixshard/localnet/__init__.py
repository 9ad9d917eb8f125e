"""The one process harness: local networks for tests, ``nixshard demo`` and benchmarks.

    from nixshard.localnet import LocalNetwork, new_publisher

    with LocalNetwork(root, new_publisher("test-1")[0]) as local:
        network = local.start_nodes(6, 4, 2)   # node-1 .. node-6, network.toml
        url = local.start_daemon()             # nixshard serve
        ...                                    # everything is stopped on exit

A mixed network: ``local.start_nodes(3, 4, 2, buckets=3)`` makes node-4 .. node-6
buckets of a SeaweedFS it starts (or of ``seaweed=server``); gateways and
``local.run_nixshard("push", ...)`` get the AWS variables (``local.env``);
``local.bucket("node-5").kill()`` takes a bucket offline, ``local.empty_bucket("node-4")``
wipes one.

Single processes: :class:`NodeProcess` (one node, also a context manager),
:class:`BucketNode` (a bucket behind its own endpoint),
:func:`start_nodes` / :func:`stop_all` (nodes without a network file), and
:class:`ManagedProcess` for any other local server with a health URL.
"""

from .buckets import BucketNode
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
    "BucketNode",
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
