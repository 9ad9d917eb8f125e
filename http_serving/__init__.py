"""What both HTTP servers (the storage node and the cache daemon) share: serving an aiohttp app
with bounded connections, access logs, request metrics, the error middleware that answers
each server's exceptions by its exception -> status map, ``HOST:PORT`` parsing.
"""
