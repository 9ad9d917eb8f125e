"""What travels between clients and nodes: manifests, signed records, stripes and shard ids,
shard batch frames, proofs of storage, write authorization.
"""
