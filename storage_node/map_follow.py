"""A node run from a network map takes each newer epoch's keys, roles and quotas.

Without ``--network`` a node's accepted publisher keys, maintainer roles and
quotas come from the network map (:attr:`NodeConfig.keys_from_map`).  When it
takes a newer epoch (a ``PUT /map`` or gossip, :mod:`storage_node.map_store`),
they are replaced by that epoch's, with the keys given by
``--accept-publisher`` / ``--accept-maintainer`` kept on top; at start the
newest map the node holds is used (it may be newer than the ``--map`` given).
A write is checked against the keys in force when it arrives.
"""

from __future__ import annotations

import logging

from storage_network.network_map import SignedMap
from storage_network.wire.write_auth import with_roles

from .config import NodeConfig
from .map_store import MapStore
from .store import Store

log = logging.getLogger("nixshard.node")


def follow_maps(config: NodeConfig, store: Store, maps: MapStore) -> None:
    """Apply the newest held map now and every newer one as it is taken (a no-op
    unless ``config.keys_from_map``)."""
    if not config.keys_from_map:
        return
    start = config.network_map.network.publishers if config.network_map is not None else {}
    extra = {name: key for name, key in config.publishers.items() if name not in start}
    extra_roles = (config.maintainers or frozenset()) & set(extra)

    def apply(signed: SignedMap) -> None:
        network = signed.network
        keys = {**network.publishers, **extra}
        roles = (network.maintainers or frozenset()) | extra_roles
        config.publishers = with_roles(keys, roles)
        config.maintainers = frozenset(roles)
        store.usage.quotas = dict(network.quotas)
        log.info("network map epoch %d: accepting %d keys (%d maintainers), %d quotas",
                 signed.epoch, len(keys), len(roles), len(network.quotas))

    newest = maps.newest
    if newest is not None:
        apply(newest)
    maps.listeners.append(apply)
