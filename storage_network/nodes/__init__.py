"""The nodes: the NodeStore protocol every kind of node implements, its kinds (our HTTP node,
S3-compatible buckets), the registry that picks a kind by URL scheme, and how the client
judges and orders nodes (health, audit scores, rendezvous placement).
"""
