"""A tiny NAR writer for hand-made (also invalid) NARs, shared by the NAR tests."""

from __future__ import annotations

from nix_formats.nar import nar_string as s  # the token Nix writes


def reg(data: bytes, executable: bool = False) -> bytes:
    exe = s(b"executable") + s(b"") if executable else b""
    return s(b"(") + s(b"type") + s(b"regular") + exe + s(b"contents") + s(data) + s(b")")


def sym(target: bytes) -> bytes:
    return s(b"(") + s(b"type") + s(b"symlink") + s(b"target") + s(target) + s(b")")


def directory(*entries: tuple[bytes, bytes]) -> bytes:
    body = b"".join(
        s(b"entry") + s(b"(") + s(b"name") + s(name) + s(b"node") + node + s(b")")
        for name, node in entries
    )
    return s(b"(") + s(b"type") + s(b"directory") + body + s(b")")


def nar(node: bytes) -> bytes:
    return s(b"nix-archive-1") + node


SAMPLE = nar(
    directory(
        (b"a", reg(b"hello\n")),
        (b"bin", directory((b"run", reg(b"#!/bin/sh\n", executable=True)))),
        (b"empty", directory()),
        (b"link", sym(b"a")),
        (b"z", reg(b"")),
    )
)
