"""One module per HTTP endpoint of the cache daemon, each with ``setup(app)``.

:func:`cache_server.app.create_app` calls the ``setup`` of every module in
:data:`MODULES`, in order (a GET route answers HEAD too).  Handlers raise
the exceptions of :mod:`cache_server.errors`, :mod:`storage_network` and
:mod:`nix_formats`; the gateway's error map (:data:`cache_server.responses.ERRORS`)
answers them.
"""

from __future__ import annotations

from . import (
    build_log,
    healthz,
    listing,
    metrics,
    nar,
    narinfo,
    nix_cache_info,
    nodes,
    realisations,
    upload_nar,
    upload_narinfo,
    upstream_nar,
)

#: Every route module, in registration order (a path's GET and PUT side by side).
MODULES = (nix_cache_info, narinfo, upload_narinfo, listing, nar, upload_nar, build_log,
           realisations, upstream_nar, nodes, metrics, healthz)
