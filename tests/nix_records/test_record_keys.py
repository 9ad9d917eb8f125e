"""The keys of the records that are not narinfos (build logs, pins, realisations): fixed
vectors, computed before their derivation became one helper, so a key never changes."""

from __future__ import annotations

import pytest

from nix_formats.realisation import DrvOutput
from nix_records.build_logs import log_record_key
from nix_records.narinfo_record import derived_record_key
from nix_records.pins import pin_record_key
from nix_records.realisation_record import realisation_record_key


@pytest.mark.parametrize(("drv", "key"), [
    ("0123456789abcdfghijklmnpqrsvwxyz-hello-2.12.drv", "12sm72ri792lcvb0p1m43pab4icy90zj"),
    ("7gp5h3y3bz1ljdzm0b9mhb2dsm5bgq9r-bash-5.2.drv", "1ixkcxbfclp8xir8yz1cpa87g4x5zqci"),
])
def test_build_log_keys_stay(drv: str, key: str) -> None:
    assert log_record_key(drv) == key
    assert derived_record_key(b"nixshard build log", drv) == key


@pytest.mark.parametrize(("name", "key"), [
    ("nightly", "1cdcm82375s2lsl1vgxls745n2jb9inw"),
    ("release-v1.2", "11ais0mhcdhf870r4siyzn5lmmvrvra3"),
])
def test_pin_keys_stay(name: str, key: str) -> None:
    assert pin_record_key(name) == key
    assert derived_record_key(b"nixshard pin", name) == key


@pytest.mark.parametrize(("drv_output", "key"), [
    ("sha256:" + "0" * 64 + "!out", "0rznlp6469zdizb6qj3pbn8dilniwg60"),
    ("sha256:" + "ab" * 32 + "!dev", "0646x76l7y1p7h3zmhwq3pwlikrq1a3x"),
])
def test_realisation_keys_stay(drv_output: str, key: str) -> None:
    assert realisation_record_key(DrvOutput.parse(drv_output)) == key
    assert derived_record_key(b"nixshard realisation", drv_output) == key


def test_non_ascii_text_is_hashed_as_utf8() -> None:
    key = "1gxzkyyx1wqg7mb14r1sa8h0zl3npman"
    assert derived_record_key(b"nixshard pin", "\u00e9-unicode") == key
