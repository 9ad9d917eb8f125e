"""The HTTP API of our storage node (:mod:`storage_node`), shared by the node and its
client (:mod:`storage_network.nodes.http`).

Reads are open; writes are signed and bound to the node (see
:mod:`storage_network.wire.write_auth`)::


    PUT  /shards/<id>     201 new, 200 already held
    GET  /shards/<id>     200 body, 404 absent
    POST /shards/batch-get   {"ids": [...]} -> framed bodies   (see shard_batch)
    POST /shards/batch-put   framed shards, signed -> {"created": [...], "held": [...]}
    POST /shards/has      {"ids": [...], "touch": bool} -> {"present": [...]}
                          (touch: signed; sets the mtime of the present ones)
    DELETE /shards/<id>?before=T   signed; 204 deleted, 404 absent,
                          412 the shard was written or touched at/after T
    GET  /shards          "<id> <size> <mtime>" lines
    PUT  /records/<key>   201 new, 200 replaced or already held; 409 the node
                          holds a newer version or another content (see record)
    GET  /records/<key>   200 body, 404 absent
    DELETE /records/<key>?sha256=HEX  signed; 204 deleted, 404 absent,
                          412 the stored record is not the one named
    GET  /records         "<key> <size> <mtime> <atime>" lines
    POST /proofs          {"nonce": hex, "ids": [...]} -> binary answers
    GET  /healthz         JSON
"""

HAS_BATCH = 5000
"""Most ids one ``POST /shards/has`` asks about."""
PEEK_HEADER = "X-Nixshard-Peek"
"""A record read carrying ``X-Nixshard-Peek: 1`` does not move the record's last-read time."""
