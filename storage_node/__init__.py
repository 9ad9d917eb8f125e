"""The storage-node daemon: an aiohttp server that keeps shards and records.

A node stores two kinds of objects under its data directory:

- *shards* (``<64 hex root>.<index>``): one erasure-coded fragment of a chunk
  plus the Merkle proof tying it to the stripe root its id names.  The node
  checks the proof on write, so it never stores bytes that do not match
  their id.
- *records* (``<32 chars [0-9a-z]>``): a publisher-signed envelope; the node
  stores only records signed by a publisher key it accepts.

Reads are open; writes need a publisher's request signature, bound to this
node's id and carrying a nonce it has not seen (:mod:`storage_network.wire.write_auth`,
:mod:`storage_node.write_auth`, :mod:`storage_node.replay`).  Everything a
request carries is hostile input: signature headers are checked before any
body byte is read, bodies are read within a node-wide budget of bytes
(:mod:`storage_node.budget`) and a stall deadline (:mod:`storage_node.body`),
and every refusal is a specific 4xx with one log line
(:mod:`storage_node.responses`).  Record versions follow
:func:`storage_network.wire.record.replacement` (:mod:`storage_node.routes.records`).
Start one with ``nixshard node`` or
``python -m storage_node``; build one in-process with
:func:`storage_node.app.create_app`.
"""
