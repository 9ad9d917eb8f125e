"""The network map: the signed, versioned description of the network (docs/network-map.md).

``node_id``     a node's id from its ed25519 key
``document``    the map document: fields, canonical bytes, defensive parsing
``signatures``  signed maps, t-of-n verification along a chain of epochs
``bootstrap``   the small file clients and new nodes start from
``transport``   the node's map routes seen from a client (capped reads)
``fetch``       the newest valid map from several nodes; a refresher
"""

from .bootstrap import Bootstrap, bootstrap_from_map, load_bootstrap, map_urls, parse_bootstrap
from .document import (
    MAX_MAP_BYTES,
    MapDocument,
    canonical_bytes,
    document_from_network,
    parse_document,
)
from .fetch import MapRefresher, fetch_map_chain, fetch_newest_map
from .node_id import node_id_for_key
from .signatures import (
    MapSignature,
    SignedMap,
    TrustRoot,
    load_signed_map,
    parse_signed_map,
    verify_chain,
    verify_next,
)

__all__ = [
    "MAX_MAP_BYTES",
    "Bootstrap",
    "MapDocument",
    "MapRefresher",
    "MapSignature",
    "SignedMap",
    "TrustRoot",
    "bootstrap_from_map",
    "canonical_bytes",
    "document_from_network",
    "fetch_map_chain",
    "fetch_newest_map",
    "load_bootstrap",
    "load_signed_map",
    "map_urls",
    "node_id_for_key",
    "parse_bootstrap",
    "parse_document",
    "parse_signed_map",
    "verify_chain",
    "verify_next",
]
