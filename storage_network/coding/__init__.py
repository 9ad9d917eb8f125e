"""From a payload to shards and back: content-defined chunking, per-chunk compression and the
erasure code (the slot where encryption will go).
"""
