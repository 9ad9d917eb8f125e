"""The bootstrap file: the maintainers of epoch 1 and a few node URLs to ask for maps.

A small TOML file (at most :data:`MAX_BOOTSTRAP_BYTES` bytes) that gateways,
publishers, audit, repair, gc and new nodes start from::

    # nixshard bootstrap file
    maintainers = ["maint-1:BASE64...", "maint-2:BASE64...", "maint-3:BASE64..."]
    threshold = 2                  # signatures of these maintainers epoch 1 needs
    nodes = ["http://node-a.example:9001", "http://node-b.example:9001"]

From it, :func:`storage_network.network_map.fetch.fetch_newest_map` checks
epoch 1 against these keys and walks every later epoch (each signed by the
maintainers of the one before) up to the newest a node serves.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from storage_network.capped_file import read_capped
from storage_network.errors import AuthError, MapError
from storage_network.nodes.registry import url_error
from storage_network.wire.write_auth import PublisherKey, parse_publisher_key

from .signatures import SignedMap, TrustRoot

MAX_BOOTSTRAP_BYTES = 1024 * 1024
MAX_BOOTSTRAP_URLS = 1024


@dataclass(frozen=True)
class Bootstrap:
    """A parsed bootstrap file.

    Attributes:
        maintainers: the keys that sign epoch 1.
        threshold: how many of them must (1..len(maintainers)).
        urls: base URLs of nodes to ask for maps (``http(s)://host:port``).
        source: where it was read from (for messages).
    """

    maintainers: tuple[PublisherKey, ...]
    threshold: int
    urls: tuple[str, ...]
    source: str = "bootstrap file"

    def trust_root(self) -> TrustRoot:
        """The :class:`TrustRoot` of epoch 0: its maintainers sign epoch 1."""
        return TrustRoot(0, self.maintainers, self.threshold, "", self.source)

    def to_toml(self) -> str:
        """The file text :func:`parse_bootstrap` reads back."""
        return "# nixshard bootstrap file (docs/network-map.md)\n" + tomli_w.dumps({
            "maintainers": [k.text() for k in self.maintainers],
            "threshold": self.threshold,
            "nodes": list(self.urls)})


def bootstrap_from_map(signed: SignedMap, urls: tuple[str, ...] = ()) -> Bootstrap:
    """A bootstrap for ``signed``'s network made from its epoch 1: ``signed`` must be
    epoch 1 (its maintainers are the ones a bootstrap vouches for).  ``urls``: default,
    the map's http(s) nodes that are not removed.

    Raises:
        MapError: ``signed`` is not epoch 1.
    """
    if signed.epoch != 1:
        raise MapError(f"a bootstrap file is made from epoch 1, not epoch {signed.epoch}: "
                       "a client holding a later map starts from that map instead")
    # epoch 1's own maintainers and threshold are the ones that signed it
    doc = signed.document
    return Bootstrap(doc.maintainers, doc.threshold, urls or map_urls(signed))


def map_urls(signed: SignedMap) -> tuple[str, ...]:
    """The URLs of ``signed``'s nodes that serve maps: http(s), not removed."""
    return tuple(n.url for n in signed.document.nodes
                 if n.state != "removed" and n.url.lower().startswith(("http://", "https://")))


def parse_bootstrap(text: str, source: str = "bootstrap file") -> Bootstrap:
    """Parse bootstrap file text.

    Raises:
        MapError: over :data:`MAX_BOOTSTRAP_BYTES`, not TOML, a missing or
            mistyped key, a malformed key or URL, a threshold out of range.
    """
    if len(text.encode("utf-8", "replace")) > MAX_BOOTSTRAP_BYTES:
        raise MapError(f"{source}: larger than {MAX_BOOTSTRAP_BYTES} bytes")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MapError(f"{source} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"maintainers", "threshold", "nodes"})
    if unknown:
        raise MapError(f"{source}: unknown keys {unknown}")
    texts, threshold, urls = doc.get("maintainers"), doc.get("threshold"), doc.get("nodes", [])
    if not isinstance(texts, list) or not texts:
        raise MapError(f"{source}: `maintainers` must list at least one name:base64 key")
    keys = []
    for text in texts:
        if not isinstance(text, str):
            raise MapError(f"{source}: each maintainer key must be a string name:base64")
        try:
            keys.append(parse_publisher_key(text))
        except AuthError as exc:
            raise MapError(f"{source}: {exc}") from None
    if len({k.name for k in keys}) != len(keys):
        raise MapError(f"{source}: a maintainer name is listed twice")
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not (
            1 <= threshold <= len(keys)):
        raise MapError(f"{source}: `threshold` must be a whole number 1..{len(keys)}, "
                       f"got {threshold!r}")
    if not isinstance(urls, list) or len(urls) > MAX_BOOTSTRAP_URLS:
        raise MapError(f"{source}: `nodes` must be a list of at most {MAX_BOOTSTRAP_URLS} URLs")
    for url in urls:
        why = url_error(url) if isinstance(url, str) else "is not a string"
        if why is None and not url.lower().startswith(("http://", "https://")):
            why = "is not a node that serves maps (http:// or https://)"
        if why is not None:
            raise MapError(f"{source}: node {str(url)[:80]!r} {why}")
    return Bootstrap(tuple(keys), threshold, tuple(u.rstrip("/") for u in urls), source)


def load_bootstrap(path: str | Path) -> Bootstrap:
    """Read and parse the bootstrap file at ``path``.

    Raises:
        MapError: unreadable, too large, or malformed (the message names the file).
    """
    try:
        data = read_capped(path, MAX_BOOTSTRAP_BYTES)
    except OSError as exc:
        raise MapError(f"cannot read bootstrap file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MapError(f"bootstrap file {path} is not UTF-8") from None
    return parse_bootstrap(text, f"bootstrap file {path}")
