"""cache_server.upstream against a binary cache written by Nix itself (``nix copy``),
served over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from cache_server.upstream import Upstreams, UpstreamUnavailableError
from nix_formats.compression import decompress
from nix_formats.keys import PublicKey
from nix_formats.nar import dump_path
from nix_formats.nar_parser import validate_nar
from nix_formats.store_path import StorePath
from nixshard.localnet import env_with_nix_config
from tests.support.servers import serve_app

from .upstream_support import KEY, Session

# -- golden: a binary cache written by Nix 2.8 ----------------------------------------------

DRV = (
    'derivation { name = "upstream-golden"; system = builtins.currentSystem; '
    'builder = "/bin/sh"; args = ["-c" "PATH=/usr/bin:/bin; mkdir $out; '
    'head -c 200000 /dev/urandom > $out/blob; echo hi > $out/hi; ln -s hi $out/link"]; }'
)


def run_nix(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], env=env_with_nix_config(),
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{args} failed: {proc.stderr}")
    return proc.stdout.strip()


@pytest.mark.nix
@pytest.mark.parametrize("compression", ["xz", "zstd"])
async def test_golden_nix_written_cache(
    session: Session, tmp_path: Path, compression: str
) -> None:
    store_path = await asyncio.to_thread(run_nix, "nix-build", "--no-out-link", "-E", DRV)
    sk, pk = tmp_path / "sk", tmp_path / "pk"
    await asyncio.to_thread(run_nix, "nix-store", "--generate-binary-cache-key",
                            "golden-upstream-1", sk, pk)
    cache_dir = tmp_path / "cache"
    await asyncio.to_thread(run_nix, "nix", "copy", "--to",
                            f"file://{cache_dir}?compression={compression}&secret-key={sk}",
                            store_path)
    app = web.Application()
    app.router.add_static("/", cache_dir)
    async with serve_app(app) as url:
        hash_part_ = StorePath.parse(store_path).hash_part
        trusted = Upstreams([url], [PublicKey.load(pk)], session)
        hit = await trusted.narinfo(hash_part_)
        assert hit is not None
        assert hit.text == (cache_dir / f"{hash_part_}.narinfo").read_text()
        assert hit.narinfo.compression == compression
        async with await trusted.open_nar(hit) as response:
            body = [piece async for piece in response.content.iter_chunked(8192)]
        stats = validate_nar(decompress(compression, body, max_output=hit.narinfo.nar_size))
        assert stats.nar_hash == hit.narinfo.nar_hash
        assert b"".join(decompress(compression, body, max_output=hit.narinfo.nar_size)) == \
            b"".join(dump_path(store_path))
        untrusted = Upstreams([url], [KEY.public_key()], session)
        assert await untrusted.narinfo(hash_part_) is None
        # a range is forwarded and its 206 accepted (aiohttp's static files honour Range)
        async with await trusted.open_file(0, hit.narinfo.url,
                                           byte_range="bytes=7-") as response:
            assert response.status == 206
            assert await response.read() == b"".join(body)[7:]
        with pytest.raises(UpstreamUnavailableError) as missing:
            await trusted.open_file(0, f"nar/{'0' * 52}.nar.xz")
        assert missing.value.status == 404
