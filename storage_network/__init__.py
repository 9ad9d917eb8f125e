"""The shard network seen from a client, Nix-agnostic.

Chunker, erasure codec, manifests, rendezvous placement, node client,
fetch/assemble and publish. Nothing here knows about Nix: the payload is an
opaque byte stream (a NAR, to the callers in ``uploader`` and ``cache_server``).
"""
