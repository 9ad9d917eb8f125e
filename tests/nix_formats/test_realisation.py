"""Realisations (``realisations/<id>.doi``): ids, JSON, fingerprint and signatures.

The golden files were written by Nix 2.8.0 on this machine: a CA derivation
``rexp-top`` depending on a CA ``rexp-dep``, built with ``--option
secret-key-files sk`` (so Nix signed both realisations) and copied with ``nix
copy --to file://...``.  SK/PK are that throwaway key pair.
"""

from __future__ import annotations

import json

import pytest

from nix_formats import nix32
from nix_formats.errors import NixFormatError
from nix_formats.keys import PublicKey, SecretKey
from nix_formats.realisation import (
    MAX_REALISATION_BYTES,
    DrvOutput,
    Realisation,
    RealisationError,
)
from nix_formats.store_path import StorePath

SK = ("rexp-1:VV5h/sl++yxxNpz4MZJxmjZNUfbZueKZGc9hOUmrjxkmKDGm5LENH700lOdL6k+GvyRA8bAzFDX+LFxNF2"
      "Q7nA==")
PK = "rexp-1:JigxpuSxDR+9NJTnS+pPhr8kQPGwMxQ1/ixcTRdkO5w="
DEP_ID = "sha256:f2be28786067059b74806c4fe8b76ee0acbba4c4deea4b68c9618f38063d3bf7!out"
TOP_ID = "sha256:1394bd2c4b361fd88cbc01f6efc2b33473ceaad7e550df7db77bdb4c63c34372!out"
# realisations/<id>.doi exactly as Nix 2.8.0 wrote them
NIX_DEP = (
    '{"dependentRealisations":{},"id":"' + DEP_ID + '","outPath":"av8qj3sfhyj1pn8mcawi6ya4nmwsx1'
    'mi-rexp-dep","signatures":["rexp-1:F3P5VLDnT3HyN2ye2uMKZ//J5V65141fBponHnCszGSx/XIK4b7+/7dLG'
    'bDsKVOtAurmcJmJyW5QUjA9NvneCg=="]}')
NIX_TOP = (
    '{"dependentRealisations":{"' + DEP_ID + '":"av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-rexp-dep"},'
    '"id":"' + TOP_ID + '","outPath":"rq1c1qibqsh82m6w2sxd6cmzc06jbg0b-rexp-top","signatures":'
    '["rexp-1:SMil2x5g6+kOHlGSlUDJQLguG22junxs7L3mmM3lKTuEOWMKjOqbGYx0dGZCXxEh9XdLcZ0qflNL9rxdNe8Q'
    'Dg=="]}')


def nix32_id(text: str) -> str:
    """``text`` with its hash written in nix32 instead of base16."""
    digest, _, output = text.removeprefix("sha256:").partition("!")
    return f"sha256:{nix32.encode(bytes.fromhex(digest))}!{output}"


@pytest.mark.parametrize("doi", [NIX_DEP, NIX_TOP])
def test_nix_written_realisations_render_back_byte_for_byte(doi: str) -> None:
    assert Realisation.parse(doi).render() == doi
    assert Realisation.parse(doi.encode()).render() == doi


@pytest.mark.parametrize("doi", [NIX_DEP, NIX_TOP])
def test_nix_signatures_verify_over_the_fingerprint_with_dependencies(doi: str) -> None:
    real = Realisation.parse(doi)
    assert real.signed_by([PublicKey.parse(PK)]) == ["rexp-1"]
    # Nix 2.8 signs the JSON without "signatures", dependentRealisations included
    whole = json.loads(doi)
    del whole["signatures"]
    assert real.fingerprint() == json.dumps(whole, sort_keys=True, separators=(",", ":"))
    assert real.fingerprint().startswith('{"dependentRealisations":')


def test_signing_reproduces_nixs_signature() -> None:
    top = Realisation.parse(NIX_TOP)
    unsigned = Realisation.new(top.id, top.out_path, (), dict(top.dependent))
    assert unsigned.signatures == ()
    assert unsigned.sign(SecretKey.parse(SK)).render() == NIX_TOP
    assert unsigned.sign(SecretKey.parse(SK)).sign(SecretKey.parse(SK)).signatures == \
        top.signatures


def test_signatures_that_do_not_verify_are_ignored() -> None:
    top = Realisation.parse(NIX_TOP)
    other = SecretKey.generate("other-1")
    assert top.signed_by([other.public_key()]) == []
    # the same key name with another key: not a valid signature
    impostor = SecretKey.generate("rexp-1")
    assert top.signed_by([impostor.public_key()]) == []
    # a signature of the dep's fingerprint does not sign the top
    dep_sig = Realisation.parse(NIX_DEP).signatures[0]
    moved = Realisation.new(top.id, top.out_path, [dep_sig], dict(top.dependent))
    assert moved.signed_by([PublicKey.parse(PK)]) == []
    # another outPath, or dropped dependencies, break Nix's signature
    data = json.loads(NIX_TOP)
    data["dependentRealisations"] = {}
    assert Realisation.parse(json.dumps(data)).signed_by([PublicKey.parse(PK)]) == []
    data = json.loads(NIX_TOP)
    data["outPath"] = "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-rexp-top"
    assert Realisation.parse(json.dumps(data)).signed_by([PublicKey.parse(PK)]) == []


def test_ids_in_nix32_are_the_same_output_and_render_in_base16() -> None:
    assert DrvOutput.parse(nix32_id(TOP_ID)) == DrvOutput.parse(TOP_ID)
    assert DrvOutput.parse(nix32_id(TOP_ID)).text() == TOP_ID
    data = json.loads(NIX_TOP)
    data["id"] = nix32_id(TOP_ID)
    data["dependentRealisations"] = {nix32_id(DEP_ID): data["dependentRealisations"][DEP_ID]}
    # Nix's fingerprint renders ids in base16, so the signature still holds
    real = Realisation.parse(json.dumps(data, indent=2))
    assert real.render() == NIX_TOP
    assert real.signed_by([PublicKey.parse(PK)]) == ["rexp-1"]


def test_optional_fields_and_unknown_keys() -> None:
    real = Realisation.parse('{"id":"' + DEP_ID + '","outPath":"av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi'
                             '-rexp-dep","future":[1,2]}')
    assert real.signatures == () and real.dependent == ()
    assert real.render() == ('{"dependentRealisations":{},"id":"' + DEP_ID + '","outPath":"'
                             'av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-rexp-dep","signatures":[]}')


def test_output_names() -> None:
    digest = "ab" * 32
    for name in ("out", "dev", "lib32", "man.1", "a+b=c?d_e-f"):
        assert DrvOutput.parse(f"sha256:{digest}!{name}").output == name
    for bad in ("", "a/b", "a b", "é", "a!b", "x" * 212):
        with pytest.raises(RealisationError, match="output name"):
            DrvOutput.parse(f"sha256:{digest}!{bad}")


@pytest.mark.parametrize("text, why", [
    ("sha256:" + "ab" * 32, "no '!'"),
    ("ab" * 32 + "!out", "does not start with 'sha256:'"),
    ("sha512:" + "ab" * 32 + "!out", "does not start with 'sha256:'"),
    ("md5:" + "ab" * 16 + "!out", "does not start with 'sha256:'"),
    ("sha256:" + "AB" * 32 + "!out", "neither 64 lower-case hex"),
    ("sha256:" + "ab" * 31 + "!out", "neither 64 lower-case hex"),
    ("sha256:" + "e" * 52 + "!out", "illegal|invalid|character"),
    ("sha256:" + "z" * 52 + "!out", "bits|excess|nonzero|invalid"),
    ("sha256:" + "q80GWBFDqNlnXVKgyuKfwYmH7HvwSWQh9XtnmaPb28U=" + "!out", "neither 64"),
])
def test_malformed_ids_are_refused(text: str, why: str) -> None:
    with pytest.raises(RealisationError, match=why):
        DrvOutput.parse(text)


@pytest.mark.parametrize("body, why", [
    (b"\xff{}", "not UTF-8"),
    (b"{", "not valid JSON"),
    (b"[1]", "not an object"),
    (b'{"id": 1, "outPath": "x"}', "no string field 'id'"),
    (b'{"id": "' + DEP_ID.encode() + b'"}', "no string field 'outPath'"),
    (b'{"id": "x!out", "outPath": "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-a"}', "sha256"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "/nix/store/av8qj3sfhyj1pn8mcawi6ya4nmwsx1'
     b'mi-a"}', "outPath"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "' + b"a" * 600 + b'"}', "outPath is 600"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-a",'
     b' "signatures": "k:x"}', "'signatures' is not a list"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-a",'
     b' "signatures": ["k:notbase64"]}', "signature"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-a",'
     b' "dependentRealisations": []}', "'dependentRealisations' is not an object"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-a",'
     b' "dependentRealisations": {"' + TOP_ID.encode() + b'": "nope"}}', "dependent"),
    (b'{"id": "' + DEP_ID.encode() + b'", "id": "' + TOP_ID.encode() + b'", "outPath": "av8qj3'
     b'sfhyj1pn8mcawi6ya4nmwsx1mi-a"}', "key 'id' twice"),
    (b'{"id": "' + DEP_ID.encode() + b'", "outPath": "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-a",'
     b' "x": NaN}', "NaN"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON|not an object"),
    (b" " * (MAX_REALISATION_BYTES + 1), "larger than"),
])
def test_malformed_json_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(RealisationError, match=why) as caught:
        Realisation.parse(body)
    assert isinstance(caught.value, NixFormatError)
    assert len(str(caught.value)) < 1000  # never quotes a huge input


def test_a_dependency_given_in_both_encodings_is_refused() -> None:
    path = "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-rexp-dep"
    body = json.dumps({"id": TOP_ID, "outPath": path,
                       "dependentRealisations": {DEP_ID: path, nix32_id(DEP_ID): path}})
    with pytest.raises(RealisationError, match="given twice"):
        Realisation.parse(body)


def test_same_build_ignores_signatures_and_old_empty_dependencies() -> None:
    top = Realisation.parse(NIX_TOP)
    bare = Realisation.new(top.id, top.out_path)
    assert top.same_build(bare) and bare.same_build(top)
    other_path = Realisation.new(top.id, StorePath.parse_basename(
        "av8qj3sfhyj1pn8mcawi6ya4nmwsx1mi-rexp-top"), top.signatures, dict(top.dependent))
    assert not top.same_build(other_path)
    other_dep = Realisation.new(top.id, top.out_path, (), {
        DrvOutput.parse(DEP_ID): StorePath.parse_basename("rq1c1qibqsh82m6w2sxd6cmzc06jbg0b-x")})
    assert not top.same_build(other_dep)
