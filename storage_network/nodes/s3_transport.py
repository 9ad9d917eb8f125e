"""The transport of the S3 node kind (:mod:`storage_network.nodes.s3`): its URL, its
aiobotocore client, capped answers, and S3 failures mapped onto the NodeError tree.

URL: ``s3://BUCKET/PREFIX?endpoint=URL&region=R&profile=P`` (every query field
optional; ``endpoint`` an ``http(s)://host[:port]`` URL, else the profile's or
``AWS_ENDPOINT_URL``'s, else AWS).  Credentials never come from the URL or the
network file: botocore resolves them the standard way (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``~/.aws/credentials`` and
``~/.aws/config`` or ``AWS_SHARED_CREDENTIALS_FILE`` / ``AWS_CONFIG_FILE``, the
URL's ``profile`` or ``AWS_PROFILE``, SSO, web identity, container and instance roles).

Caps: a streamed object body by the caller's limit (bytes, checked against the
declared length first, then while reading); every other answer (XML listings,
errors, write acknowledgements) by :data:`SMALL_ANSWER_BYTES` through
:class:`CappedSession`, since botocore would otherwise read them whole.
Requests run through the node's :class:`~storage_network.nodes.limits.RequestGate`
(slots, deadlines counted from the slot, answer budget); botocore's retries are
off (a failure is the node's, the caller moves on) and so are its CRC checksums
(every shard and record is verified against signed metadata anyway).

Why aiobotocore (``benchmarks/s3_clients.py``; figures in ``benchmarks/results.md``):
obstore costs 3-8x less client CPU per request (~0.25 against ~0.9 ms for a
64 KiB GET or PUT, ~0.12 against ~0.95 ms for a HEAD) but cannot send a conditional
DELETE or a CopyObject with ``MetadataDirective: REPLACE`` (our touch), does not
read ``~/.aws`` profiles by itself (it would need boto3 as a credential provider),
and reports failures as message strings rather than statuses.  aiobotocore has all
of these, runs on aiohttp (already our HTTP client: one stack, plain asyncio
cancellation), and its CPU (~1 ms per request) is small next to a shard's
transfer; revisit if S3 nodes come to dominate a gateway's read path.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import botocore.exceptions as boto
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession
from botocore.parsers import ResponseParserError

from storage_network.client import cancel_and_wait
from storage_network.errors import NodeAnswerError, NodeError, NodeStatusError
from storage_network.nodes.limits import SMALL_ANSWER_BYTES, Exchange, RequestGate

READ_PIECE = 1 << 16
T = TypeVar("T")
U = TypeVar("U")
_BUCKET = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_SEGMENT = re.compile(r"\A[A-Za-z0-9._-]+\Z")
_FIELDS = {"endpoint": re.compile(r"\Ahttps?://[^/@\s?#]+/?\Z"),
           "region": re.compile(r"\A[a-z0-9-]{1,40}\Z"),
           "profile": re.compile(r"\A[A-Za-z0-9._+=@-]{1,64}\Z")}


@dataclass(frozen=True)
class S3Location:
    """Where a bucket node keeps its objects, parsed from its URL.

    Attributes:
        bucket: the bucket name.
        prefix: key prefix without leading or trailing ``/`` ("" for the bucket root).
        endpoint: ``http(s)://host[:port]``, or None for botocore's default.
        region: the signing region, or None for the profile's / environment's.
        profile: the AWS profile to take credentials and settings from, or None.
    """

    bucket: str
    prefix: str
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None

    def key(self, folder: str, name: str = "") -> str:
        """The object key of ``name`` in ``folder`` (``shards``, ``records``, ``reads``)."""
        return "/".join(p for p in (self.prefix, folder, name) if p) + ("" if name else "/")


def parse_s3_url(url: str) -> S3Location:
    """The :class:`S3Location` of an ``s3://`` node URL.

    Raises:
        ValueError: why the URL is malformed (the network file check quotes it).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "s3" or parts.fragment:
        raise ValueError("is not s3://BUCKET/PREFIX?endpoint=URL&region=R&profile=P")
    if "@" in parts.netloc or not _BUCKET.fullmatch(parts.netloc):
        raise ValueError(f"names no valid bucket ({parts.netloc[:70]!r}; credentials "
                         "never go in a node URL)")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") or not _SEGMENT.fullmatch(s) for s in segments):
        raise ValueError("has a prefix other than /-separated [A-Za-z0-9._-] segments")
    fields: dict[str, str] = {}
    try:
        pairs = parse_qsl(parts.query, strict_parsing=True) if parts.query else []
    except ValueError:
        raise ValueError("has a malformed query") from None
    for name, value in pairs:
        pattern = _FIELDS.get(name)
        if pattern is None or name in fields:
            raise ValueError(f"has an unknown or repeated query field {name[:30]!r} "
                             "(endpoint, region, profile)")
        if not pattern.fullmatch(value):
            raise ValueError(f"has a malformed {name} {value[:70]!r}")
        fields[name] = value
    endpoint = fields.get("endpoint")
    return S3Location(parts.netloc, "/".join(segments),
                      endpoint.rstrip("/") if endpoint else None,
                      fields.get("region"), fields.get("profile"))


def s3_url_error(url: str) -> str | None:
    """Why ``url`` cannot name a bucket node, or None."""
    try:
        parse_s3_url(url)
    except ValueError as exc:
        return str(exc)
    return None


class AnswerTooLargeError(Exception):
    """A non-streamed answer passed :data:`SMALL_ANSWER_BYTES`."""


class CappedSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's HTTP session, reading answers that are not streamed to the
    caller (listings, errors, acknowledgements) at most :data:`SMALL_ANSWER_BYTES`
    bytes (:class:`AnswerTooLargeError` past that)."""

    async def send(self, request: Any) -> Any:
        streamed = request.stream_output
        request.stream_output = True
        answer = await super().send(request)
        if not streamed or answer.status_code >= 300:
            raw: aiohttp.ClientResponse = answer.raw
            if (raw.content_length or 0) > SMALL_ANSWER_BYTES:
                raw.close()
                raise AnswerTooLargeError(f"answer of {raw.content_length} bytes")
            data = bytearray()
            while piece := await raw.content.read(READ_PIECE):
                data += piece
                if len(data) > SMALL_ANSWER_BYTES:
                    raw.close()
                    raise AnswerTooLargeError(f"answer over {SMALL_ANSWER_BYTES} bytes")
            answer._content = bytes(data)  # what AioAWSResponse.content caches
        return answer


_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, AioSession]] \
    = weakref.WeakKeyDictionary()
"""One botocore session per event loop and profile: a session loads the S3 model once
(~60 ms), and refreshable credentials hold asyncio locks bound to one loop."""


def _session(profile: str | None) -> AioSession:
    """The event loop's session for ``profile`` (made on first use)."""
    sessions = _SESSIONS.setdefault(asyncio.get_running_loop(), {})
    if profile not in sessions:
        sessions[profile] = AioSession(profile=profile)
    return sessions[profile]


class S3Transport:
    """One bucket's aiobotocore client (made on first use) and its gated requests.

    Args:
        node_id: the node id (named in every error).
        where: the bucket, prefix, endpoint, region and profile.
        gate: the node's slots, deadlines and answer budget.
    """

    def __init__(self, node_id: str, where: S3Location, gate: RequestGate) -> None:
        self.node_id, self.where, self.gate = node_id, where, gate
        self._client: Any = None
        self._context: Any = None
        self._opening = asyncio.Lock()

    async def client(self) -> Any:
        """The S3 client; credentials are resolved here, outside any request's deadline.

        Raises:
            NodeError: unknown profile or no credentials found.
        """
        async with self._opening:
            if self._client is None:
                d = self.gate.deadlines
                config = AioConfig(
                    connect_timeout=d.connect, read_timeout=max(d.first_byte, d.stall),
                    retries={"total_max_attempts": 1}, max_pool_connections=self.gate.slots,
                    s3={"addressing_style": "path"}, http_session_cls=CappedSession,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
                try:
                    session = _session(self.where.profile)
                    if await session.get_credentials() is None:
                        raise boto.NoCredentialsError()
                    context = session.create_client(
                        "s3", endpoint_url=self.where.endpoint,
                        region_name=self.where.region, config=config)
                    self._client = await context.__aenter__()
                except boto.BotoCoreError as exc:
                    raise NodeError(f"node {self.node_id}: no S3 client for bucket "
                                    f"{self.where.bucket}: {exc}"[:400]) from None
                self._context = context
        return self._client

    async def close(self) -> None:
        """Close the client and its connection pool."""
        if self._context is not None:
            context, self._context, self._client = self._context, None, None
            await context.__aexit__(None, None, None)

    async def call(self, what: str, operation: str, *, quiet: tuple[int, ...] = (),
                   **params: Any) -> tuple[int, dict[str, Any]]:
        """One S3 operation (a method name of the client) on this bucket, its answer
        read whole (at most :data:`SMALL_ANSWER_BYTES`).

        Returns:
            ``(200, answer)``, or ``(status, {})`` for an error status in ``quiet``.

        Raises:
            NodeTimeoutError, NodeStatusError, NodeAnswerError, NodeError.
        """
        client = await self.client()
        async with self.gate.exchange(what) as ex:
            try:
                async with asyncio.timeout(self.gate.deadlines.first_byte
                                           + self.gate.deadlines.connect):
                    answer: dict[str, Any] = await getattr(client, operation)(
                        Bucket=self.where.bucket, **params)
            except boto.ClientError as exc:
                status = failed_status(exc)
                if status in quiet and not bucket_missing(exc):
                    return status, {}
                raise self.failure(exc, what, ex) from None
            except Exception as exc:  # noqa: BLE001 - every failure maps onto NodeError
                raise self.failure(exc, what, ex) from None
        return 200, answer

    async def read(self, what: str, key: str, limit: int, free: int | None = None
                   ) -> tuple[bytes, dict[str, Any]] | None:
        """An object's bytes (at most ``limit``) and its GET answer (ETag,
        LastModified...), or None when absent (404).

        Raises:
            NodeAnswerError: the object is larger than ``limit``; NodeError otherwise.
        """
        client = await self.client()
        async with self.gate.exchange(what, free) as ex:
            try:
                async with asyncio.timeout(self.gate.deadlines.first_byte
                                           + self.gate.deadlines.connect):
                    answer = await client.get_object(Bucket=self.where.bucket, Key=key)
                ex.phase = "answer"
                async with answer["Body"] as body:
                    declared = answer.get("ContentLength")
                    if isinstance(declared, int) and declared > limit:
                        raise NodeAnswerError(f"node {self.node_id}: {what}: object of "
                                              f"{declared} bytes, at most {limit} expected")
                    data = bytearray()
                    while piece := await body.read(READ_PIECE):
                        if len(data) + len(piece) > limit:
                            raise NodeAnswerError(f"node {self.node_id}: {what}: object "
                                                  f"over {limit} bytes")
                        await ex.hold(len(data) + len(piece))
                        data += piece
            except boto.ClientError as exc:
                if failed_status(exc) == 404 and not bucket_missing(exc):
                    return None
                raise self.failure(exc, what, ex) from None
            except NodeError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure maps onto NodeError
                raise self.failure(exc, what, ex) from None
        return bytes(data), answer

    def failure(self, exc: BaseException, what: str, ex: Exchange) -> BaseException:
        """The NodeError for ``exc`` (a TimeoutError stays one: the gate names its phase)."""
        name = f"node {self.node_id}: {what}"
        if isinstance(exc, boto.ClientError):
            error = exc.response.get("Error", {})
            return NodeStatusError(f"{name} -> {failed_status(exc)} {error.get('Code', '')} "
                                   f"{str(error.get('Message', ''))[:200]}", failed_status(exc))
        if isinstance(exc, boto.ConnectTimeoutError | boto.ReadTimeoutError):
            return self.gate.timed_out(what, "connect" if isinstance(
                exc, boto.ConnectTimeoutError) else ex.phase, ex.started)
        if isinstance(exc, TimeoutError):
            return exc
        if isinstance(exc, AnswerTooLargeError | ResponseParserError):
            return NodeAnswerError(f"{name}: malformed or oversized answer: {exc}"[:400])
        return NodeError(f"{name} failed: {type(exc).__name__} {exc}"[:400])


async def each(width: int, items: Sequence[T], work: Callable[[T], Awaitable[U]]) -> list[U]:
    """``work`` on every item, ``width`` at once, results in order; the first failure
    cancels the rest and is raised."""
    results: list[Any] = [None] * len(items)
    todo = iter(enumerate(items))

    async def worker() -> None:
        for at, item in todo:
            results[at] = await work(item)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(width, len(items)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        await cancel_and_wait(tasks)
    return results


def bucket_missing(exc: boto.ClientError) -> bool:
    """True when the bucket itself does not exist (``NoSuchBucket``): a failure of the
    node, never an "absent" answer (a HEAD of an object cannot tell; its 404 is read
    as absent, and the node's health check, a HeadBucket, fails)."""
    return bool(exc.response.get("Error", {}).get("Code") == "NoSuchBucket")


def failed_status(exc: boto.ClientError) -> int:
    """The HTTP status of a failed S3 request (0 when the answer did not say)."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status if isinstance(status, int) else 0
