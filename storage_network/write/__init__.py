"""The write path: payload to shards on nodes around missing ones, then the record.
"""
