"""The read path: record lookup, where shards are, the hedged and verified chunk fetch.
"""
