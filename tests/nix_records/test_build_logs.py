"""Build-log records: their key and metadata, and that a narinfo lookup can tell them apart."""

from __future__ import annotations

from nix_formats import nix32
from nix_formats.store_path import StorePath
from nix_records import LOG_MAGIC, is_build_log, log_metadata, log_record_key

DRV = "1" * 32 + "-hello-2.12.drv"


def test_log_record_key_is_32_nix32_characters_of_its_own() -> None:
    key = log_record_key(DRV)
    assert len(key) == 32 and set(key) <= set(nix32.ALPHABET)
    assert key != StorePath.parse_basename(DRV).hash_part
    assert key == log_record_key(DRV) != log_record_key("2" * 32 + "-hello-2.12.drv")


def test_log_metadata_names_the_derivation() -> None:
    assert log_metadata(DRV) == LOG_MAGIC + DRV.encode()
    assert is_build_log(log_metadata(DRV))
    assert not is_build_log(f"StorePath: /nix/store/{DRV}\n".encode())
    assert not is_build_log(b"")
