"""Test helpers shared across test packages that are not about processes.

Processes (nodes, gateways, any local server with a health URL) are started
with :mod:`nixshard.localnet`, the harness the demo and benchmarks use too.

- :mod:`tests.support.network`: the test network (4-of-6, small chunks).
- :mod:`tests.support.metrics`: Prometheus samples, scraped or in-process.
- :mod:`tests.support.servers`: an aiohttp app served in-process on 127.0.0.1.
- :mod:`tests.support.trees`: directory trees to push as store paths.
- :mod:`tests.support.shards`: a node's shard files, and rotting them.
- :mod:`tests.support.disk`: a real tmpfs, and filling a disk up.
- :mod:`tests.support.zstd`: bodies of back-to-back zstd frames.
- :mod:`tests.support.clock`: a clock the test sets.
- :mod:`tests.support.error_maps`: a server's exception -> status map and routes package.
"""
