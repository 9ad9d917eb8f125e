"""One module per HTTP endpoint of the cache daemon."""
