"""What the uploader asks Nix: arguments resolved to store paths, both JSON shapes, validity."""

from __future__ import annotations

from pathlib import Path

import pytest

from uploader.closure import _json_entries, query_closure, resolve_store_path, valid_paths
from uploader.errors import NixQueryError

H = "0" * 32


def test_resolve_follows_links_only_up_to_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    real = store / f"{H}-hello"
    real.mkdir()
    linked = store / f"{H}-link"
    linked.symlink_to(real.name)  # a store path that is itself a symlink
    (tmp_path / "result").symlink_to(real)
    (tmp_path / "result-link").symlink_to(linked)
    (tmp_path / "chain").symlink_to("result")
    s = str(store)
    assert resolve_store_path(str(real), s) == str(real)
    assert resolve_store_path(str(real) + "/", s) == str(real)
    assert resolve_store_path(str(tmp_path / "result"), s) == str(real)
    assert resolve_store_path(str(tmp_path / "chain"), s) == str(real)
    assert resolve_store_path(str(tmp_path / "result-link"), s) == str(linked)


def test_resolve_refuses_what_is_not_a_store_path(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / f"{H}-hello" / "bin").mkdir(parents=True)
    with pytest.raises(NixQueryError, match="does not exist"):
        resolve_store_path(str(tmp_path / "missing"), str(store))
    with pytest.raises(NixQueryError, match=f"is not a store path: it leads to {tmp_path}, "
                                            f"which is not directly in {store}"):
        resolve_store_path(str(tmp_path), str(store))
    with pytest.raises(NixQueryError, match="not directly in"):
        resolve_store_path(str(store / f"{H}-hello" / "bin"), str(store))


def test_both_json_shapes_of_nix_path_info() -> None:
    valid = {"narHash": "sha256-x", "narSize": 1}
    old = [{"path": "/nix/store/a", **valid}, {"path": "/nix/store/b", "valid": False}]
    new = {"/nix/store/a": valid, "/nix/store/b": None}
    assert [(p, e is not None) for p, e in _json_entries(old)] == [
        ("/nix/store/a", True), ("/nix/store/b", False)]
    assert [(p, e is not None) for p, e in _json_entries(new)] == [
        ("/nix/store/a", True), ("/nix/store/b", False)]
    with pytest.raises(TypeError, match="expected a JSON list or object"):
        _json_entries("text")


@pytest.mark.nix
def test_invalid_store_path_is_named(tmp_path: Path) -> None:
    missing = f"/nix/store/{H}-nixshard-never-built"
    assert valid_paths([missing]) == set()
    with pytest.raises(NixQueryError, match="does not exist"):
        query_closure([missing])
    with pytest.raises(NixQueryError, match="is not a store path"):
        query_closure([str(tmp_path)])
