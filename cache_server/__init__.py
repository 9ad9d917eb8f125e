"""``nixshard serve``: the Nix binary-cache HTTP protocol over the shard network."""
