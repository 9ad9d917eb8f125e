"""Buckets of a local SeaweedFS as nodes of a local network.

Each bucket is reached through an endpoint of its own, a TCP relay to the
server's S3 port (``relay.py``), so a test or the demo takes one bucket offline
as it kills a node (:meth:`BucketNode.kill`, back with :meth:`BucketNode.restart`)
while the other buckets of the same server stay up; :meth:`BucketNode.empty`
deletes its objects instead (a node that lost its disk).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .ports import free_port
from .process import ManagedProcess

if TYPE_CHECKING:
    from nixshard.seaweed import SeaweedServer

RELAY = Path(__file__).with_name("relay.py")


class BucketNode(ManagedProcess):
    """One bucket of ``server`` as the node ``node_id`` (created when missing).

    The process is the bucket's relay (log ``log_path``); :attr:`node_url` is the
    bucket's ``s3://`` URL for the network file, with the relay as its endpoint and
    no credentials (they come from the AWS environment: ``server.aws_env()``).
    """

    def __init__(self, server: SeaweedServer, bucket: str, node_id: str, log_path: Path,
                 port: int | None = None) -> None:
        self.server = server
        self.bucket = bucket
        port = port or free_port()
        super().__init__(node_id, [str(port), str(server.port)], f"http://127.0.0.1:{port}",
                         log_path, program=(sys.executable, str(RELAY)))
        server.create_bucket(bucket)

    @property
    def node_id(self) -> str:
        """The node's id (its :attr:`name`)."""
        return self.name

    @property
    def node_url(self) -> str:
        """The network-file URL: ``s3://BUCKET?endpoint=<relay>&region=R``."""
        return self.server.node_url(self.bucket, endpoint=self.url)

    def empty(self) -> int:
        """Delete every object of the bucket; returns how many there were."""
        return self.server.empty_bucket(self.bucket)
