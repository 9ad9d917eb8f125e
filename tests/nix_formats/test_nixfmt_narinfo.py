"""narinfo parsing, rendering, fingerprints and every parse error."""

from __future__ import annotations

import pytest

from nix_formats.errors import NarInfoError, NixFormatError, SignatureError
from nix_formats.hash import format_hash, parse_nix_hash
from nix_formats.narinfo import NarInfo, check_sig_text
from nix_formats.store_path import StorePath
from tests.nix_formats.samples import NIX_WRITTEN_NARINFO

NIX_WRITTEN = NIX_WRITTEN_NARINFO
NO_REFS = """\
StorePath: /nix/store/ggbqg8lqjwj75wznkv03h0x2bjr2in0j-a
URL: nar/0kwnzfnhkydqkdls2rc7ag3w795w1ffd9m2vl1ys33y5hsg961lz.nar.xz
Compression: xz
FileHash: sha256:0kwnzfnhkydqkdls2rc7ag3w795w1ffd9m2vl1ys33y5hsg961lz
FileSize: 124
NarHash: sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj
NarSize: 120
References: \n\
Deriver: h0qb3wmwhkx4nsnnlp5janwnw1bz9ng8-a.drv
"""
MINIMAL = """\
StorePath: /nix/store/ggbqg8lqjwj75wznkv03h0x2bjr2in0j-a
URL: nar/x.nar
NarHash: sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj
NarSize: 120
"""
HASH_A = "ggbqg8lqjwj75wznkv03h0x2bjr2in0j"


def test_parse_nix_written() -> None:
    info = NarInfo.parse(NIX_WRITTEN)
    assert info.store_path == StorePath("54dfqaxwz23zvax91bpff2q48w2d2w6s", "b")
    assert info.url == "nar/1py0ql2r3fvf5h8h9xh2fdsxkizwb8p4wgfa848nlfiv612sv3vr.nar.xz"
    assert info.compression == "xz"
    assert info.file_hash == "sha256:1py0ql2r3fvf5h8h9xh2fdsxkizwb8p4wgfa848nlfiv612sv3vr"
    assert info.file_size == 168
    assert info.nar_hash == "sha256:1p2169hbi1x462yd1i8wjipy0kdc1lmp14qdqg0p2lmfp88hcwqh"
    assert info.nar_size == 160
    assert info.references == [f"{HASH_A}-a"]
    assert info.reference_paths() == [f"/nix/store/{HASH_A}-a"]
    assert info.deriver == "zv5r7h905kpqkma1x4xvwvxjamg6sdgq-b.drv"
    assert info.sigs == [NIX_WRITTEN.split("Sig: ")[1].strip()]
    assert info.ca is None and info.system is None and info.extra == []


@pytest.mark.parametrize("text", [NIX_WRITTEN, NO_REFS])
def test_render_round_trip(text: str) -> None:
    assert NarInfo.parse(text).render() == text


def test_minimal_defaults() -> None:
    info = NarInfo.parse(MINIMAL)
    assert info.compression == "bzip2"
    assert info.file_hash is None and info.file_size is None
    assert info.references == [] and info.sigs == [] and info.deriver is None
    rendered = info.render()
    assert "Compression: bzip2\n" in rendered
    assert "References: \n" in rendered
    assert NarInfo.parse(rendered) == info


def test_empty_compression_means_bzip2() -> None:
    assert NarInfo.parse(MINIMAL + "Compression: \n").compression == "bzip2"


def test_fingerprint() -> None:
    info = NarInfo.parse(NIX_WRITTEN)
    assert info.fingerprint() == (
        "1;/nix/store/54dfqaxwz23zvax91bpff2q48w2d2w6s-b;"
        "sha256:1p2169hbi1x462yd1i8wjipy0kdc1lmp14qdqg0p2lmfp88hcwqh;160;"
        f"/nix/store/{HASH_A}-a"
    )
    assert NarInfo.parse(NO_REFS).fingerprint().endswith(";120;")


def test_fingerprint_sorts_references_and_normalises_hash() -> None:
    _, digest = parse_nix_hash("sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj")
    refs = f"zzzzqaxwz23zvax91bpff2q48w2d2w6s-z {HASH_A}-a 00000000000000000000000000000000-m"
    for written in (format_hash("sha256", digest, "base16"), format_hash("sha256", digest, "sri")):
        text = MINIMAL.replace(
            "NarHash: sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj",
            f"NarHash: {written}",
        )
        info = NarInfo.parse(text + f"References: {refs}\n")
        assert info.nar_hash == written
        assert info.references == refs.split(" ")
        assert info.fingerprint() == (
            f"1;/nix/store/{HASH_A}-a;"
            "sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj;120;"
            "/nix/store/00000000000000000000000000000000-m,"
            f"/nix/store/{HASH_A}-a,"
            "/nix/store/zzzzqaxwz23zvax91bpff2q48w2d2w6s-z"
        )


def test_optional_fields_and_unknown_keys_round_trip() -> None:
    text = (
        NO_REFS
        + "System: x86_64-linux\n"
        + "Sig: k1:"
        + "A" * 86
        + "==\n"
        + "Sig: k2:"
        + "B" * 86
        + "==\n"
        + "CA: fixed:r:sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj\n"
        + "X-Custom: kept\n"
        + "Another: also kept\n"
    )
    info = NarInfo.parse(text)
    assert info.system == "x86_64-linux"
    assert info.ca == "fixed:r:sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj"
    assert info.extra == [("X-Custom", "kept"), ("Another", "also kept")]
    assert [s.split(":")[0] for s in info.sigs] == ["k1", "k2"]
    assert info.render() == text


def test_unknown_keys_are_rendered_last() -> None:
    info = NarInfo.parse("X-First: 1\n" + MINIMAL)
    assert info.render().endswith("References: \nX-First: 1\n")


def test_unknown_deriver_is_kept() -> None:
    info = NarInfo.parse(MINIMAL + "Deriver: unknown-deriver\n")
    assert info.deriver == "unknown-deriver"


def test_text_ca() -> None:
    info = NarInfo.parse(
        MINIMAL + "CA: text:sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj\n"
    )
    assert info.ca is not None and info.ca.startswith("text:")
    assert NarInfo.parse(MINIMAL + "CA: \n").ca is None


def test_identical_sigs_are_kept_once() -> None:
    sig = "k:" + "A" * 86 + "=="
    info = NarInfo.parse(MINIMAL + f"Sig: {sig}\nSig: {sig}\n")
    assert info.sigs == [sig]


def test_other_store_dir() -> None:
    text = MINIMAL.replace("/nix/store/", "/tmp/store/")
    info = NarInfo.parse(text, store_dir="/tmp/store")
    assert info.render() == (
        f"StorePath: /tmp/store/{HASH_A}-a\n"
        "URL: nar/x.nar\n"
        "Compression: bzip2\n"
        "NarHash: sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj\n"
        "NarSize: 120\n"
        "References: \n"
    )
    assert info.fingerprint().startswith("1;/tmp/store/")
    with pytest.raises(NarInfoError, match="is not in the Nix store '/nix/store'"):
        NarInfo.parse(text)


def test_constructed_narinfo_renders() -> None:
    info = NarInfo(
        store_path=StorePath.parse(f"/nix/store/{HASH_A}-a"),
        url="nar/abc.nar.zst",
        compression="zstd",
        nar_hash="sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj",
        nar_size=120,
        references=[f"{HASH_A}-a"],
    )
    assert info.render() == (
        f"StorePath: /nix/store/{HASH_A}-a\n"
        "URL: nar/abc.nar.zst\n"
        "Compression: zstd\n"
        "NarHash: sha256:11hap619k9yv29jfxdq44d7fxwks93qsw8w8iwbgdjwxni9zsxlj\n"
        "NarSize: 120\n"
        f"References: {HASH_A}-a\n"
    )


# -- parse errors -----------------------------------------------------------------


def replace_line(text: str, key: str, line: str | None) -> str:
    out = []
    for old in text.splitlines(keepends=True):
        if old.startswith(f"{key}: "):
            if line is not None:
                out.append(line + "\n")
        else:
            out.append(old)
    return "".join(out)


@pytest.mark.parametrize("key", ["StorePath", "URL", "NarHash", "NarSize"])
def test_missing_required_field(key: str) -> None:
    with pytest.raises(NarInfoError, match=f"narinfo has no {key} line"):
        NarInfo.parse(replace_line(NIX_WRITTEN, key, None))


@pytest.mark.parametrize(
    ("key", "line", "message"),
    [
        ("NarSize", "NarSize: 12a", "line 7: NarSize '12a' is not a non-negative integer"),
        ("NarSize", "NarSize: -1", "NarSize '-1' is not a non-negative integer"),
        ("NarSize", "NarSize: ", "NarSize '' is not a non-negative integer"),
        ("NarSize", "NarSize:  160", "NarSize ' 160' is not a non-negative integer"),
        ("NarSize", "NarSize: 0", "line 7: NarSize is 0"),
        ("NarSize", f"NarSize: {1 << 64}", "does not fit in 64 bits"),
        ("FileSize", "FileSize: 1.5", "line 5: FileSize '1.5' is not a non-negative integer"),
        ("URL", "URL: ", "line 2: URL is empty"),
        ("StorePath", "StorePath: /nix/store/abc-b", "line 1: bad StorePath: .*too short"),
        (
            "StorePath",
            "StorePath: /nix/store/54dfqaxwz23zvax91bpff2q48w2d2w6e-b",
            "bad StorePath: .*illegal base-32 character 'e'",
        ),
        ("StorePath", "StorePath: /usr/bin/sh", "is not in the Nix store"),
        ("NarHash", "NarHash: sha256:xyz", "line 6: bad NarHash: .*wrong length 3"),
        (
            "NarHash",
            "NarHash: 1p2169hbi1x462yd1i8wjipy0kdc1lmp14qdqg0p2lmfp88hcwqh",
            "include a type",
        ),
        (
            "NarHash",
            "NarHash: sha1:kpcd173cq987hw957sx6m0868wv3x6d9",
            "line 6: NarHash must be sha256, got sha1",
        ),
        ("FileHash", "FileHash: md5:abc", "line 4: bad FileHash: .*wrong length"),
        ("References", "References: not-a-path", "line 8: bad reference: .*too short"),
        (
            "References",
            f"References: {HASH_A}-a {HASH_A}-a",
            f"line 8: duplicate reference '{HASH_A}-a'",
        ),
        ("Deriver", "Deriver: ", "line 9: bad Deriver: .*too short"),
        ("Deriver", "Deriver: /nix/store/x.drv", "bad Deriver"),
        ("Sig", "Sig: nocolon", "line 10: bad Sig: signature 'nocolon' is not of the form"),
        ("Sig", "Sig: :" + "A" * 86 + "==", "has an empty key name"),
        ("Sig", "Sig: k:AAAA", "not the base64 of a 64-byte ed25519 signature .*got 4"),
    ],
)
def test_bad_field(key: str, line: str, message: str) -> None:
    with pytest.raises(NarInfoError, match=message):
        NarInfo.parse(replace_line(NIX_WRITTEN, key, line))


@pytest.mark.parametrize(
    ("ca", "message"),
    [
        ("sha256:abc", "CA 'sha256:abc' does not start with 'text:' or 'fixed:'"),
        ("fixed:r:sha256:abc", "CA 'fixed:r:sha256:abc' has a bad hash: .*wrong length"),
        ("text:", "CA 'text:' has a bad hash: .*does not include a type"),
    ],
)
def test_bad_ca(ca: str, message: str) -> None:
    with pytest.raises(NarInfoError, match=f"line 5: {message}"):
        NarInfo.parse(MINIMAL + f"CA: {ca}\n")


@pytest.mark.parametrize(
    "key", ["StorePath", "URL", "Compression", "NarHash", "NarSize", "References", "Deriver"]
)
def test_duplicate_keys(key: str) -> None:
    line = next(x for x in NIX_WRITTEN.splitlines() if x.startswith(f"{key}: "))
    with pytest.raises(NarInfoError, match=f"line 11: duplicate {key} \\(first on line "):
        NarInfo.parse(NIX_WRITTEN + line + "\n")


def test_duplicate_unknown_key() -> None:
    with pytest.raises(NarInfoError, match="line 6: duplicate X \\(first on line 5\\)"):
        NarInfo.parse(MINIMAL + "X: 1\nX: 2\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "narinfo is empty"),
        (MINIMAL[:-1], "narinfo does not end with a newline"),
        (MINIMAL.replace("\n", "\r\n"), "carriage return"),
        (MINIMAL + "\n", "line 5: empty line"),
        ("\n" + MINIMAL, "line 1: empty line"),
        (MINIMAL + "NoColonHere\n", "line 5: 'NoColonHere' is not of the form 'Key: value'"),
        (MINIMAL + "Key:value\n", "line 5: 'Key:value' is not of the form"),
        (MINIMAL + ": value\n", "line 5: ': value' is not of the form"),
        (MINIMAL + "Bad Key: v\n", "line 5: 'Bad Key: v' is not of the form"),
    ],
)
def test_bad_lines(text: str, message: str) -> None:
    with pytest.raises(NarInfoError, match=message):
        NarInfo.parse(text)


def test_errors_are_nix_format_errors() -> None:
    with pytest.raises(NixFormatError):
        NarInfo.parse("garbage")


# -- render / fingerprint errors ------------------------------------------------------


def test_render_refuses_line_injection() -> None:
    info = NarInfo.parse(MINIMAL)
    info.url = "nar/x.nar\nStorePath: /nix/store/evil"
    with pytest.raises(NarInfoError, match="URL value .* has a line break"):
        info.render()
    info = NarInfo.parse(MINIMAL)
    info.extra.append(("Bad Key", "v"))
    with pytest.raises(NarInfoError, match="invalid key 'Bad Key'"):
        info.render()
    info = NarInfo.parse(MINIMAL)
    info.compression = ""
    with pytest.raises(NarInfoError, match="compression is empty"):
        info.render()
    info = NarInfo.parse(MINIMAL)
    info.file_size = -1
    with pytest.raises(NarInfoError, match="file_size is negative"):
        info.render()


def test_fingerprint_errors() -> None:
    info = NarInfo.parse(MINIMAL)
    info.nar_size = 0
    with pytest.raises(NarInfoError, match="NarSize is 0"):
        info.fingerprint()
    info = NarInfo.parse(MINIMAL)
    info.nar_hash = "md5:" + "0" * 32
    with pytest.raises(NarInfoError, match="NarHash must be sha256, got md5"):
        info.fingerprint()
    info = NarInfo.parse(MINIMAL)
    info.references.append("bogus")
    with pytest.raises(NarInfoError, match="bad reference"):
        info.fingerprint()


def test_check_sig_text() -> None:
    sig = "cache.example.org-1:" + "A" * 86 + "=="
    assert check_sig_text(sig) == sig
    with pytest.raises(SignatureError, match="is not of the form <keyname>:<base64>"):
        check_sig_text("abc")
