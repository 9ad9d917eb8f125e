"""The storage-node daemon: an aiohttp server that keeps shards and records.

A node stores two kinds of objects under its data directory:

- *shards* (``<64 hex root>.<index>``): one erasure-coded fragment of a chunk
  plus the Merkle proof tying it to the stripe root its id names.  The node
  checks the proof on write, so it never stores bytes that do not match
  their id.
- *records* (``<32 chars [0-9a-z]>``): a publisher-signed envelope; the node
  stores only records signed by a publisher key it accepts.

Reads are open; writes need a publisher's request signature
(:mod:`storage_network.auth`).  Start one with ``nixshard node`` or
``python -m storage_node``; build one in-process with
:func:`storage_node.app.create_app`.
"""
