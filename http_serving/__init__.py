"""What both HTTP servers (the storage node and the cache daemon) share: serving an aiohttp app
with bounded connections, access logs, request metrics, ``HOST:PORT`` parsing.
"""
