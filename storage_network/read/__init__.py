"""The read path: record lookup, where shards are, the hedged and verified chunk fetch.

- :mod:`~storage_network.read.record_lookup` (and its memory,
  :mod:`~storage_network.read.record_memory`): the newest validly signed record;
- :mod:`~storage_network.read.locate`: which nodes hold which shards;
- :mod:`~storage_network.read.plan`: every chunk reachable, checked before a response;
- :mod:`~storage_network.read.shard_fetch`: one verified shard request;
- :mod:`~storage_network.read.chunk_fetch`: the hedged fetch of one chunk;
- :mod:`~storage_network.read.batch_fetch`: a window of chunks, batched per node;
- :mod:`~storage_network.read.stream`: the payload's frames in order, fetched ahead.
"""
