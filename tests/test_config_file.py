"""``--config FILE``: TOML defaults for serve, node and push; flags win; the example
files in docs/ list only real keys with their real defaults."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from nixshard.cli import main
from nixshard.config_file import config_keys
from nixshard.localnet import new_publisher
from tests.support.network import running_network

DOCS = Path(__file__).resolve().parent.parent / "docs"
COMMANDS = {"gateway.toml": "serve", "node.toml": "node", "push.toml": "push"}
LINE_RE = re.compile(r"^#? ?([a-z_]+) = (.+?)(?:\s+#.*)?$")


def example_entries(path: Path) -> list[tuple[str, object, bool]]:
    """(key, value, commented) of every ``key = value`` line of an example file."""
    out = []
    for line in path.read_text().splitlines():
        m = LINE_RE.match(line)
        if m:
            value = tomllib.loads(f"v = {m.group(2)}")["v"]
            out.append((m.group(1), value, line.startswith("#")))
    return out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_example_files_list_real_keys_with_their_defaults(name: str) -> None:
    command = main.commands[COMMANDS[name]]
    keys = config_keys(command)
    entries = example_entries(DOCS / name)
    assert entries, name
    params = {p.name: p for p in command.params}
    for key, value, commented in entries:
        assert key in keys, f"{name}: {key} is not an option of nixshard {command.name}"
        param = params[keys[key]]
        default = param.get_default(click.Context(command))
        if getattr(param, "multiple", False) and not isinstance(default, list | tuple):
            default = []  # click's "unset" for a repeatable option: none given
        if commented and isinstance(default, str | int | float | list | tuple):
            # (options without a default -- None or click's unset -- show an example)
            if isinstance(default, tuple):
                default = list(default)
            assert value == default, f"{name}: {key} = {value!r}, the default is {default!r}"
    documented = {key for key, _, _ in entries}
    assert documented == set(keys), f"{name}: undocumented keys {set(keys) - documented}"


def test_config_values_become_defaults_and_flags_win(tmp_path: Path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('listen = "127.0.0.1:9555"\nmax_shard_bytes = 4096\n')
    out = CliRunner().invoke(main, ["node", "--config", str(cfg), "--help"]).output
    assert "127.0.0.1:9555" in out and "4096" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("max_shard_bytes = 0\n")
    res = CliRunner().invoke(main, ["node", "--config", str(bad), "--data", str(tmp_path)])
    assert res.exit_code == 2 and "--max-shard-bytes" in res.output
    res = CliRunner().invoke(main, ["node", "--config", str(bad), "--data", str(tmp_path),
                                    "--max-shard-bytes", "0"])
    assert res.exit_code == 2  # the flag is checked as well
    res = CliRunner().invoke(main, ["node", "--config", str(bad), "--data", str(tmp_path / "d"),
                                    "--max-shard-bytes", "x"])
    assert res.exit_code == 2 and "'x' is not a valid integer" in res.output


@pytest.mark.parametrize("text, message", [
    ("bogus = 1\n", "unknown key(s) bogus; known keys:"),
    ("listen = \n", "is not valid TOML"),
    ("fault = 'flip'\n", "unknown key(s) fault"),  # hidden test-only options stay out
])
def test_bad_config_files_are_refused_with_what_is_wrong(tmp_path: Path, text: str,
                                                         message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    res = CliRunner().invoke(main, ["node", "--config", str(cfg), "--data", str(tmp_path)])
    assert res.exit_code == 2
    assert message in res.output
    missing = CliRunner().invoke(main, ["serve", "--config", str(tmp_path / "none.toml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_a_gateway_started_from_a_config_file(tmp_path: Path) -> None:
    with running_network(tmp_path, publisher=new_publisher("config-test-1")[0]) as net:
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(f'network = "{net.network_file}"\npriority = 7\n'
                       f'cache_dir = "{tmp_path / "from-config"}"\n')
        gw = net.start_gateway("cfg", extra=("--config", str(cfg)))
        info = httpx.get(f"{gw.url}/nix-cache-info", timeout=30).text
        assert "Priority: 7" in info
        # start_gateway passes --cache-dir: the flag wins over the file
        assert (tmp_path / "cfg-cache" / "nar").is_dir()
        assert not (tmp_path / "from-config").exists()


def test_secret_options_take_paths_not_values() -> None:
    serve = main.commands["serve"]
    for name in ("signing_key", "upload_credentials"):
        param = next(p for p in serve.params if p.name == name)
        assert isinstance(param.type, click.Path), name
