"""``nixshard push``: store paths -> NARs -> the shard network, references first."""
