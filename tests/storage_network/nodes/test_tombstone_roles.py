"""Who may store a tombstone (docs/keys.md): a maintainer seals it or sends it.

The rule itself (:func:`storage_network.wire.write_auth.check_may_store_tombstone`),
and a bucket node, where the client applies it before writing.
"""

from __future__ import annotations

import time

import pytest

from nixshard.localnet import new_publisher
from nixshard.seaweed import SeaweedServer
from storage_network.config import NodeInfo, init_network
from storage_network.errors import AuthError, NodeStatusError
from storage_network.nodes.s3 import S3NodeStore
from storage_network.wire.record import seal_tombstone
from storage_network.wire.write_auth import Publisher, check_may_store_tombstone, with_roles

from ..conftest import record_key

ROLE_MESSAGE = "lacks the maintainer role"

PUSHER = new_publisher("ci-push-3")[0]
MAINTAINER = new_publisher("ops-maint-3")[0]


def stone(publisher: Publisher, key: str) -> bytes:
    return seal_tombstone(publisher, key, "isa_l_rs_cauchy", 1, 0)


def test_a_tombstone_needs_a_maintainer_to_seal_or_send_it() -> None:
    keys = with_roles({p.name: p.public for p in (PUSHER, MAINTAINER)}, {MAINTAINER.name})
    pusher, maintainer = keys[PUSHER.name], keys[MAINTAINER.name]
    check_may_store_tombstone(maintainer, False)  # a maintainer's, copied by anyone
    check_may_store_tombstone(pusher, True)  # anyone's, copied by a maintainer
    check_may_store_tombstone(maintainer, True)
    with pytest.raises(AuthError, match=f"key '{PUSHER.name}' {ROLE_MESSAGE}: .* not sign "
                                        r"tombstones \(record deletions\)"):
        check_may_store_tombstone(pusher, False)


async def test_a_bucket_takes_a_tombstone_a_maintainer_sealed_or_sends(
        seaweed_server: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in seaweed_server.aws_env().items():
        monkeypatch.setenv(name, value)
    seaweed_server.create_bucket("tombstone-roles")
    url = seaweed_server.node_url("tombstone-roles", f"t{time.time_ns()}")
    network = init_network([url], 1, 0, [PUSHER.public], maintainers=[MAINTAINER.public])
    store = S3NodeStore(NodeInfo("node-1", url), publishers=network.publishers)
    stranger = new_publisher("stranger-3")[0]
    try:
        mine, theirs, old = record_key(1), record_key(2), record_key(3)
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE) as refused:
            await store.put_record(mine, stone(PUSHER, mine), PUSHER)
        assert refused.value.status == 403 and "a bucket cannot check key roles" in str(
            refused.value)
        with pytest.raises(NodeStatusError, match=ROLE_MESSAGE):  # an unlisted sender
            await store.put_record(mine, stone(PUSHER, mine), stranger)
        assert await store.get_record(mine) is None
        # a maintainer's tombstone, copied by the push key (read repair): stored
        assert await store.put_record(theirs, stone(MAINTAINER, theirs), PUSHER) == 201
        # a push key's tombstone (sealed before roles), copied by a maintainer: stored
        assert await store.put_record(old, stone(PUSHER, old), MAINTAINER) == 201
    finally:
        await store.close()
