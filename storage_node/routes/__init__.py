"""The node's HTTP endpoints: one module per group of routes, each with ``setup(app)``.

:func:`storage_node.app.create_app` calls the ``setup`` of every module in
:data:`MODULES`, in order.  Handlers raise the exceptions of
:mod:`storage_node.errors`; the node's error map (:data:`storage_node.responses.ERRORS`)
answers them.  ``GET /metrics`` is registered by :mod:`storage_node.metrics`
(with the counting of answers it needs).
"""

from __future__ import annotations

from . import health, listing, network_map, proofs, records, shards

#: Every route module, in registration order.
MODULES = (health, shards, records, listing, proofs, network_map)
