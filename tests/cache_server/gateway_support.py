"""A gateway with uploads on over a live network, and uploads made the way Nix makes them."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import httpx
import zstandard

from nix_formats import nix32
from nix_formats.hash import format_sha256_nix32
from nix_formats.keys import SecretKey, sign_narinfo
from nix_formats.nar import dump_path, nar_string
from nix_formats.narinfo import NarInfo
from nix_formats.store_path import StorePath
from nixshard.demo import tree_path_info
from nixshard.localnet import LocalNetwork, ManagedProcess, new_publisher
from tests.support.metrics import sample, scrape
from tests.support.network import running_network

USER, PASSWORD = "ci", "s3cret-pass"
BROTLI_BOMB_FILE = Path(__file__).parent.parent / "nix_formats" / "data" / "zeros-1gib.br"
"""A 1.6 kB brotli file of 1 GiB of zero bytes."""


@dataclass
class Gateway:
    """Nodes, a gateway with uploads on, its credentials file and the publisher key text."""

    net: LocalNetwork
    proc: ManagedProcess
    root: Path
    secret_text: str
    credentials: Path

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def key(self) -> SecretKey:
        return SecretKey.parse(self.secret_text)

    def client(self, auth: bool = True) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            auth=(USER, PASSWORD) if auth else None)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on the gateway's /metrics (0 when absent)."""
        return scrape(self.url, name, **labels)


def start_gateway(root: Path, *extra: str, name: str = "gw") -> Gateway:
    """6 nodes (4-of-6, small chunks) and a gateway accepting uploads from ``USER``."""
    publisher, secret_text = new_publisher("gw-tests-1")
    net = running_network(root, publisher=publisher)
    try:
        key_file = root / "secret.key"
        key_file.write_text(secret_text)
        creds = root / "credentials"
        creds.write_text(f"# uploaders\n{USER}:{PASSWORD}\n")
        proc = net.start_gateway(name, extra=("--signing-key", str(key_file),
                                              "--upload-credentials", str(creds), *extra))
    except BaseException:
        net.close()
        raise
    return Gateway(net, proc, root, secret_text, creds)


@dataclass
class Upload:
    """One store path as ``nix copy --to http://...?compression=zstd`` would upload it."""

    narinfo: NarInfo
    nar_name: str
    body: bytes
    nar: bytes

    @property
    def hash_part(self) -> str:
        return self.narinfo.store_path.hash_part


def make_upload(tree: Path, key: SecretKey | None, *, compression: str = "zstd") -> Upload:
    """The compressed NAR of ``tree`` and its (signed, when ``key``) narinfo."""
    info = tree_path_info(tree)
    nar = b"".join(dump_path(tree))
    if compression == "zstd":
        body, ext = zstandard.ZstdCompressor().compress(nar), ".zst"
    else:
        body, ext = nar, ""
    file_hash = hashlib.sha256(body).digest()
    name = f"{nix32.encode(file_hash)}.nar{ext}"
    narinfo = NarInfo(store_path=info.store_path, url=f"nar/{name}", compression=compression,
                      file_hash=format_sha256_nix32(file_hash), file_size=len(body),
                      nar_hash=format_sha256_nix32(hashlib.sha256(nar).digest()),
                      nar_size=len(nar), references=[])
    if key is not None:
        sign_narinfo(narinfo, key)
    return Upload(narinfo, name, body, nar)


def put_upload(client: httpx.Client, up: Upload) -> tuple[httpx.Response, httpx.Response]:
    """PUT the NAR, then the narinfo (Nix's order); both answers."""
    nar = client.put(f"/nar/{up.nar_name}", content=up.body,
                     headers={"Content-Type": "application/x-nix-nar"})
    info = client.put(f"/{up.hash_part}.narinfo", content=up.narinfo.render().encode(),
                      headers={"Content-Type": "text/x-nix-narinfo"})
    return nar, info


def absent(gw: Gateway, up: Upload) -> bool:
    """Whether ``gw`` answers 404 for ``up``'s narinfo."""
    return httpx.get(f"{gw.url}/{up.hash_part}.narinfo", timeout=30).status_code == 404


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def requests(route: str, method: str, status: int) -> float:
    """Requests an in-process gateway app answered (its counter in this process)."""
    return sample("nixshard_gateway_requests_total", route=route, method=method,
                  status=str(status))


def nar_of(url: str, hash_part: str) -> tuple[NarInfo, bytes]:
    """The narinfo a gateway at ``url`` serves for ``hash_part``, and its NAR file."""
    info = NarInfo.parse(httpx.get(f"{url}/{hash_part}.narinfo", timeout=30).text)
    return info, httpx.get(f"{url}/{info.url}", timeout=60).content


def bomb_upload(key: SecretKey, body: bytes, compression: str, ext: str,
                nar_size: int, tag: str = "") -> Upload:
    """A signed upload of ``body`` (compressed with ``compression``, file name ending
    ``.nar<ext>``) whose narinfo claims ``nar_size`` bytes of NAR; ``tag`` ends the
    store path's name (uploads of one body under several paths)."""
    file_hash = hashlib.sha256(body).digest()
    name = f"{nix32.encode(file_hash)}.nar{ext}"
    store_path = StorePath.parse_basename(f"{nix32.encode(file_hash[:20])}-bomb-{compression}{tag}")
    narinfo = NarInfo(store_path=store_path, url=f"nar/{name}", compression=compression,
                      file_hash=format_sha256_nix32(file_hash), file_size=len(body),
                      nar_hash=format_sha256_nix32(hashlib.sha256(b"claimed").digest()),
                      nar_size=nar_size, references=[])
    sign_narinfo(narinfo, key)
    return Upload(narinfo, name, body, b"")


def zstd_nar_bomb(contents: int) -> bytes:
    """A zstd file of a valid NAR of one regular file of ``contents`` zero bytes
    (a 32 KB file for 1 GiB)."""
    head = b"".join(nar_string(t) for t in (b"nix-archive-1", b"(", b"type", b"regular",
                                             b"contents"))
    z = zstandard.ZstdCompressor(level=3).compressobj()
    out = [z.compress(head + contents.to_bytes(8, "little"))]
    zeros = bytes(1 << 20)
    for _ in range(contents >> 20):
        out.append(z.compress(zeros))
    out.append(z.compress(nar_string(b")")))
    out.append(z.flush())
    return b"".join(out)
