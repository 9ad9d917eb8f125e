"""Tests of :mod:`nix_records`: the Nix side of a record, shared by uploader and gateway."""
