"""The network file (storage_network.config): round trip and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.signing import SigningKey

from storage_network.config import (
    ChunkingParams,
    Network,
    NodeInfo,
    init_network,
    load_network,
    write_network,
)
from storage_network.errors import NetworkFileError
from storage_network.wire.write_auth import Publisher

PUB = Publisher("pub-1", SigningKey(bytes([1]) * 32)).public
PUB2 = Publisher("pub-2", SigningKey(bytes([2]) * 32)).public


def nodes_toml(count: int, start: int = 1) -> str:
    return "".join(f'\n[[nodes]]\nid = "node-{i}"\nurl = "http://127.0.0.1:{9000 + i}"\n'
                   for i in range(start, start + count))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "network.toml"
    path.write_text(text)
    return path


def good_head(k: str = "4", m: str = "2", extra: str = "") -> str:
    return f'k = {k}\nm = {m}\npublishers = ["{PUB.text()}"]\n{extra}'


# --- round trip ---------------------------------------------------------------------------


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    network = init_network([f"http://127.0.0.1:{9000 + i}/" for i in range(1, 8)], 4, 3,
                           [PUB, PUB2], codec="liberasurecode_rs_vand", zstd_level=7,
                           record_replicas=5,
                           chunking=ChunkingParams(min_size=4096, avg_size=16384,
                                                   max_size=65536))
    path = tmp_path / "network.toml"
    write_network(network, path)
    assert not Path(f"{path}.tmp").exists()
    loaded = load_network(path)
    assert loaded == network
    assert loaded.nodes[0] == NodeInfo("node-1", "http://127.0.0.1:9001")
    assert loaded.node("node-7").url == "http://127.0.0.1:9007"
    assert loaded.publishers == {"pub-1": PUB, "pub-2": PUB2}
    assert (loaded.k, loaded.m, loaded.n) == (4, 3, 7)
    assert loaded.chunking == ChunkingParams(4096, 16384, 65536)
    # a second write replaces the file
    smaller = init_network([f"http://127.0.0.1:{9000 + i}" for i in range(1, 4)], 2, 1)
    write_network(smaller, path)
    assert load_network(path) == smaller


def test_defaults_from_a_minimal_file(tmp_path: Path) -> None:
    loaded = load_network(write(tmp_path, "k = 2\nm = 1\n" + nodes_toml(3)))
    assert loaded == Network(
        nodes=tuple(NodeInfo(f"node-{i}", f"http://127.0.0.1:{9000 + i}") for i in (1, 2, 3)),
        k=2, m=1)
    assert loaded.codec == "isa_l_rs_cauchy"
    assert loaded.record_replicas == 3
    assert loaded.chunking == ChunkingParams(64 * 1024, 256 * 1024, 1024 * 1024)


def test_node_lookup_of_absent_id() -> None:
    network = init_network(["http://127.0.0.1:9001"], 1, 0)
    with pytest.raises(KeyError):
        network.node("node-2")


# --- refusals -----------------------------------------------------------------------------


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(NetworkFileError) as info:
        load_network(path)
    message = str(info.value)
    assert message.startswith(f"network file {path}"), message
    return message


def test_missing_k(tmp_path: Path) -> None:
    assert "must set k and m" in load_error(tmp_path, "m = 2\n" + nodes_toml(6))


def test_missing_m(tmp_path: Path) -> None:
    assert "must set k and m" in load_error(tmp_path, "k = 4\n" + nodes_toml(6))


def test_more_shards_than_nodes(tmp_path: Path) -> None:
    msg = load_error(tmp_path, good_head() + nodes_toml(5))
    assert "k + m = 6 shards need 6 distinct nodes, the file lists 5" in msg


def test_no_nodes(tmp_path: Path) -> None:
    assert "network has no nodes" in load_error(tmp_path, good_head())


def test_duplicate_node_ids(tmp_path: Path) -> None:
    text = good_head() + nodes_toml(5) + '\n[[nodes]]\nid = "node-3"\nurl = "http://h:1"\n'
    assert "duplicate node ids in" in load_error(tmp_path, text)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9001/path", "http://a b:1"])
def test_bad_url(tmp_path: Path, url: str) -> None:
    text = good_head() + nodes_toml(5, start=2) + f'\n[[nodes]]\nid = "node-1"\nurl = "{url}"\n'
    shown = url.rstrip("/")  # the parser drops trailing slashes first
    assert f"node node-1: url {shown!r} is not http(s)://host:port" in load_error(tmp_path, text)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:9001", "127.0.0.1:9001", "http://", ""])
def test_url_of_no_known_kind(tmp_path: Path, url: str) -> None:
    text = good_head() + nodes_toml(5, start=2) + f'\n[[nodes]]\nid = "node-1"\nurl = "{url}"\n'
    shown = url.rstrip("/")  # "http://" becomes "http:", which names no scheme
    assert f"node node-1: url {shown!r} has no known scheme (one of http://, https://" \
        in load_error(tmp_path, text)


def test_url_with_trailing_newline(tmp_path: Path) -> None:
    text = (good_head() + nodes_toml(5, start=2)
            + '\n[[nodes]]\nid = "node-1"\nurl = "http://127.0.0.1:9001\\n"\n')
    assert "is not http(s)://host:port" in load_error(tmp_path, text)


@pytest.mark.parametrize("node_id", ["", "-node", "node 1", "a/b", "x" * 65])
def test_bad_node_id(tmp_path: Path, node_id: str) -> None:
    text = good_head() + nodes_toml(5, start=2) + f'\n[[nodes]]\nid = "{node_id}"\nurl = "http://h:1"\n'
    assert f"node id {node_id!r} must match" in load_error(tmp_path, text)


@pytest.mark.parametrize("key_text", ["pub-1", "pub-1:AAAA", "pub-1:!!!", ":" + "A" * 44])
def test_bad_publisher_key(tmp_path: Path, key_text: str) -> None:
    text = f'k = 4\nm = 2\npublishers = ["{key_text}"]\n' + nodes_toml(6)
    assert "publishers: key" in load_error(tmp_path, text)


@pytest.mark.parametrize(("sizes", "shown"), [
    ("min_size = 100\navg_size = 200\nmax_size = 400", "100/200/400"),
    ("min_size = 8192\navg_size = 4096\nmax_size = 65536", "8192/4096/65536"),
    ("min_size = 4096\navg_size = 65536\nmax_size = 16384", "4096/65536/16384"),
    ("max_size = 134217728", "65536/262144/134217728"),
])
def test_bad_chunking_sizes(tmp_path: Path, sizes: str, shown: str) -> None:
    text = good_head() + f"\n[chunking]\n{sizes}\n" + nodes_toml(6)
    msg = load_error(tmp_path, text)
    assert "chunking needs 256 <= min_size <= avg_size <= max_size <= 64 MiB" in msg
    assert shown in msg


def test_bad_codec(tmp_path: Path) -> None:
    msg = load_error(tmp_path, good_head(extra='codec = "rot13"\n') + nodes_toml(6))
    assert "codec 'rot13' is not one of" in msg


@pytest.mark.parametrize("level", ["0", "23"])
def test_bad_zstd_level(tmp_path: Path, level: str) -> None:
    msg = load_error(tmp_path, good_head(extra=f"zstd_level = {level}\n") + nodes_toml(6))
    assert f"zstd_level {level} must be 1..22" in msg


@pytest.mark.parametrize("replicas", ["0", "7"])
def test_bad_record_replicas(tmp_path: Path, replicas: str) -> None:
    msg = load_error(tmp_path, good_head(extra=f"record_replicas = {replicas}\n") + nodes_toml(6))
    assert f"record_replicas = {replicas} must be 1..6" in msg


@pytest.mark.parametrize(("k", "m"), [("0", "2"), ("4", "-1")])
def test_impossible_k_m(tmp_path: Path, k: str, m: str) -> None:
    msg = load_error(tmp_path, good_head(k, m) + nodes_toml(6))
    assert f"need k >= 1 and m >= 0, got k={k} m={m}" in msg


def test_invalid_toml(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "k = = 4\n")
    assert "is not valid TOML" in msg


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "network.toml"
    path.write_bytes(b'k = 4\nm = 2\ncodec = "\xff"\n')
    with pytest.raises(NetworkFileError, match=f"network file {path}"):
        load_network(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(NetworkFileError,
                       match=f"cannot read network file {path}: No such file or directory"):
        load_network(path)


def test_unreadable_file(tmp_path: Path) -> None:
    # a directory cannot be read as a file, even by root
    with pytest.raises(NetworkFileError,
                       match=f"cannot read network file {tmp_path}: Is a directory"):
        load_network(tmp_path)


@pytest.mark.parametrize(("line", "shown"), [
    ('k = "4"', "'k' must be a int, got '4'"),
    ("k = true", "'k' must be a int, got True"),
    ("k = 4.0", "'k' must be a int, got 4.0"),
])
def test_wrong_type_of_k(tmp_path: Path, line: str, shown: str) -> None:
    msg = load_error(tmp_path, f'{line}\nm = 2\n' + nodes_toml(6))
    assert shown in msg


@pytest.mark.parametrize(("text", "shown"), [
    ("m = false", "'m' must be a int, got False"),
    ('publishers = "pub-1:AAAA"', "'publishers' must be a list"),
    ("codec = 5", "'codec' must be a str, got 5"),
    ("record_replicas = true", "'record_replicas' must be a int, got True"),
    ('nodes = "node-1"', "'nodes' must be a list"),
    ("nodes = [1]", "each [[nodes]] entry must be a table, got 1"),
    ('chunking = "big"', "'chunking' must be a dict"),
])
def test_wrong_types(tmp_path: Path, text: str, shown: str) -> None:
    doc = f"k = 4\n{text}\n" if text.startswith("m =") else f"k = 4\nm = 2\n{text}\n"
    if not text.startswith(("nodes", "chunking")):
        doc += nodes_toml(6)
    assert shown in load_error(tmp_path, doc)


def test_wrong_type_in_chunking(tmp_path: Path) -> None:
    msg = load_error(tmp_path, good_head() + "\n[chunking]\nmin_size = true\n" + nodes_toml(6))
    assert "'min_size' must be a int, got True" in msg


def test_wrong_type_of_node_url(tmp_path: Path) -> None:
    msg = load_error(tmp_path, good_head() + nodes_toml(5) + '\n[[nodes]]\nid = "n6"\nurl = 9006\n')
    assert "'url' must be a str, got 9006" in msg


# --- failure domains ----------------------------------------------------------------------

def test_failure_domains_round_trip(tmp_path: Path) -> None:
    text = good_head(m="1") + (
        '\n[[nodes]]\nid = "a"\nurl = "http://127.0.0.1:9001"\noperator = "op-1"\n'
        'zone = "eu"\nweight = 2.5\nstate = "draining"\n' + nodes_toml(5, start=2))
    network = load_network(write(tmp_path, text))
    first = network.node("a")
    assert (first.operator, first.zone, first.weight, first.state) == ("op-1", "eu", 2.5,
                                                                       "draining")
    assert first.domain == "op-1" and network.node("node-2").domain == "node-2"
    write_network(network, tmp_path / "again.toml")
    assert load_network(tmp_path / "again.toml") == network
    assert "operator" not in (tmp_path / "again.toml").read_text().split("node-2")[1]


@pytest.mark.parametrize("line, shown", [
    ("weight = 0", "weight must be a positive number"),
    ("weight = -1.5", "weight must be a positive number"),
    ("weight = true", "weight must be a positive number"),
    ('weight = "big"', "weight must be a positive number"),
    ('state = "gone"', "node state 'gone' is not one of"),
    ("operator = 3", "'operator' must be a str"),
])
def test_bad_failure_domain_keys(tmp_path: Path, line: str, shown: str) -> None:
    text = good_head(m="1") + f'\n[[nodes]]\nid = "a"\nurl = "http://127.0.0.1:9001"\n{line}\n' \
        + nodes_toml(4, start=2)
    with pytest.raises(NetworkFileError, match=shown):
        load_network(write(tmp_path, text))


def test_quotas_round_trip(tmp_path: Path) -> None:
    text = good_head(m="1") + "\n[quotas]\n" + f'"{PUB.name}" = 1000000\n' + nodes_toml(5)
    network = load_network(write(tmp_path, text))
    assert network.quotas == {PUB.name: 1_000_000}
    write_network(network, tmp_path / "again.toml")
    assert load_network(tmp_path / "again.toml") == network


@pytest.mark.parametrize("table, shown", [
    ('"pub-1" = -1', "quotas.pub-1 must be a number of bytes"),
    ('"pub-1" = "1G"', "quotas.pub-1 must be a number of bytes"),
    ('"nobody" = 5', r"quotas \['nobody'\] name no key"),
])
def test_bad_quotas(tmp_path: Path, table: str, shown: str) -> None:
    text = good_head(m="1") + f"\n[quotas]\n{table}\n" + nodes_toml(5)
    with pytest.raises(NetworkFileError, match=shown):
        load_network(write(tmp_path, text))


def test_placement_scheme(tmp_path: Path) -> None:
    assert load_network(write(tmp_path, good_head(m="1") + nodes_toml(5))).placement \
        == "rendezvous"
    network = load_network(write(tmp_path, good_head(m="1", extra='placement = "groups"\n')
                                 + nodes_toml(5)))
    assert network.placement == "groups"
    write_network(network, tmp_path / "again.toml")
    assert load_network(tmp_path / "again.toml") == network
    with pytest.raises(NetworkFileError, match="placement 'crush' is not one of"):
        load_network(write(tmp_path, good_head(m="1", extra='placement = "crush"\n')
                           + nodes_toml(5)))
