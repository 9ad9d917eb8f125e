"""Private upstream caches: credentials from a netrc file (basic auth) or a token file
(bearer), per upstream host, never logged; against real HTTP servers on 127.0.0.1 that
require them, and a real gateway process in front of one."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from cache_server.upstream import Upstreams, UpstreamUnavailableError, check_upstream_url
from cache_server.upstream_auth import UpstreamAuth, UpstreamAuthError
from nixshard.cli import main
from nixshard.localnet import new_publisher
from tests.support.network import running_network
from tests.support.servers import serve_app

from .upstream_support import KEY, FakeCache, Published, Session, publish

NETRC_PASSWORD = "netrc-pass-123"
TOKEN = "tok-abc.DEF_456"


def basic_value(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


# --- loading the files ---------------------------------------------------------------------


def test_netrc_entries_by_host_name_and_the_default(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine Cache.Example.org login ci password {NETRC_PASSWORD}\n"
                     "default login anon password anon-pass\n")
    auth = UpstreamAuth.load(str(netrc))
    assert auth.authorization("https://cache.example.org/sub") == \
        basic_value("ci", NETRC_PASSWORD)
    assert auth.authorization("http://cache.example.org:8080") == \
        basic_value("ci", NETRC_PASSWORD)  # netrc (like curl) ignores the port
    assert auth.authorization("https://elsewhere.org") == basic_value("anon", "anon-pass")
    assert auth.describe("https://cache.example.org") == \
        "basic auth (netrc machine cache.example.org)"
    assert auth.describe("https://elsewhere.org") == "basic auth (netrc default)"
    assert NETRC_PASSWORD not in repr(auth)


def test_tokens_by_host_or_host_and_port_win_over_netrc(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login ci password {NETRC_PASSWORD}\n")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# upstream tokens\n127.0.0.1:9999 {TOKEN}\n\nprivate.example.org t2\n"
                      "[::1]:8443 t3\n")
    auth = UpstreamAuth.load(str(netrc), str(tokens))
    assert auth.authorization("http://127.0.0.1:9999") == f"Bearer {TOKEN}"
    assert auth.authorization("http://127.0.0.1:9998") == basic_value("ci", NETRC_PASSWORD)
    assert auth.authorization("https://private.example.org:1234/x") == "Bearer t2"
    assert auth.authorization("https://[::1]:8443") == "Bearer t3"
    assert auth.authorization("https://[::1]:8444") is None
    assert auth.authorization("https://public.example.org") is None
    assert auth.describe("http://127.0.0.1:9999") == "a bearer token (token file)"
    assert auth.describe("https://public.example.org") == "no credentials"
    assert TOKEN not in repr(auth)


@pytest.mark.parametrize(("kind", "text", "message"), [
    ("netrc", f"machine h login ci password {NETRC_PASSWORD}\nbogus {NETRC_PASSWORD}\n",
     "line 2: not a netrc file (bad follower token '...')"),
    ("netrc", f"machine h login a:b password {NETRC_PASSWORD}\n",
     "the login of machine h has a ':'"),
    ("tokens", f"{TOKEN}\n", "line 1: want HOST TOKEN"),
    ("tokens", f"h {TOKEN} extra\n", "line 1: want HOST TOKEN"),
    ("tokens", f"h1 t\nh1 {TOKEN}\n", "line 2: host h1 given twice"),
])
def test_bad_files_are_refused_without_quoting_secrets(tmp_path: Path, kind: str, text: str,
                                                        message: str) -> None:
    path = tmp_path / kind
    path.write_text(text)
    with pytest.raises(UpstreamAuthError) as caught:
        if kind == "netrc":
            UpstreamAuth.load(netrc_file=str(path))
        else:
            UpstreamAuth.load(token_file=str(path))
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert NETRC_PASSWORD not in str(caught.value) and TOKEN not in str(caught.value)
    with pytest.raises(UpstreamAuthError, match="cannot read"):
        UpstreamAuth.load(str(tmp_path / "missing"))
    binary = tmp_path / "binary"
    binary.write_bytes(b"machine h login ci password \xff\xfe\n")
    with pytest.raises(UpstreamAuthError, match="not UTF-8"):
        UpstreamAuth.load(netrc_file=str(binary))
    with pytest.raises(UpstreamAuthError, match="not UTF-8"):
        UpstreamAuth.load(token_file=str(binary))


def test_an_upstream_url_carrying_credentials_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        check_upstream_url(f"https://ci:{NETRC_PASSWORD}@cache.example.org")
    assert "carries credentials: put them in --upstream-netrc" in str(caught.value)
    assert NETRC_PASSWORD not in str(caught.value)
    assert check_upstream_url("https://cache.example.org/") == "https://cache.example.org"


# --- upstreams that require credentials ----------------------------------------------------


@dataclass
class Guarded:
    """A fake cache that answers 401 unless ``Authorization`` is ``expected``; ``seen``
    records the ``Authorization`` of every request (None: none sent)."""

    cache: FakeCache
    expected: str | None
    seen: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.cache.url


StartGuarded = Callable[[str | None], Awaitable[Guarded]]


@pytest.fixture
async def guarded() -> AsyncIterator[StartGuarded]:
    """``await guarded(expected)`` -> a running :class:`Guarded`, stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:
        async def start(expected: str | None) -> Guarded:
            g = Guarded(FakeCache(), expected)

            async def handle(request: web.Request) -> web.StreamResponse:
                got = request.headers.get("Authorization")
                g.seen.append(got)
                if expected is not None and got != expected:
                    return web.Response(status=401, text="who are you\n",
                                        headers={"WWW-Authenticate": 'Basic realm="up"'})
                return await g.cache.handle(request)

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            g.cache.url = await stack.enter_async_context(serve_app(app))
            return g

        yield start


def netrc_for(path: Path, password: str = NETRC_PASSWORD) -> Path:
    path.write_text(f"machine 127.0.0.1\n  login ci\n  password {password}\n")
    return path


async def test_netrc_credentials_reach_the_upstream_that_needs_them(
        guarded: StartGuarded, session: Session, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    private = await guarded(basic_value("ci", NETRC_PASSWORD))
    pub = publish(41)
    private.cache.add(pub)
    auth = UpstreamAuth.load(str(netrc_for(tmp_path / "netrc")))
    ups = Upstreams([private.url], [KEY.public_key()], session, auth=auth)
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None and hit.narinfo == pub.narinfo
    async with await ups.open_nar(hit) as response:
        assert await response.read() == pub.file
    assert set(private.seen) == {basic_value("ci", NETRC_PASSWORD)}
    assert NETRC_PASSWORD not in caplog.text


@pytest.mark.parametrize(("password", "reason"), [
    (None, "HTTP 401 Unauthorized: credentials are needed (--upstream-netrc"),
    ("wrong-pass-987", "HTTP 401 Unauthorized: credentials were refused (--upstream-netrc"),
])
async def test_missing_or_wrong_credentials_make_the_upstream_unavailable(
        guarded: StartGuarded, session: Session, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, password: str | None, reason: str) -> None:
    private = await guarded(basic_value("ci", NETRC_PASSWORD))
    pub = publish(42)
    private.cache.add(pub)
    auth = None if password is None else UpstreamAuth.load(
        str(netrc_for(tmp_path / "netrc", password)))
    ups = Upstreams([private.url], [KEY.public_key()], session, auth=auth)
    with pytest.raises(UpstreamUnavailableError, match=reason.replace("(", r"\(")):
        await ups.narinfo(pub.hash_part)
    assert "could not be asked" in caplog.text  # logged, without the password
    assert "wrong-pass-987" not in caplog.text


async def test_a_token_goes_to_its_host_and_port_only(guarded: StartGuarded, session: Session,
                                                      tmp_path: Path) -> None:
    public = await guarded(None)
    private = await guarded(f"Bearer {TOKEN}")
    pub = publish(43)
    private.cache.add(pub)
    port = private.url.rsplit(":", 1)[1]
    tokens = tmp_path / "tokens"
    tokens.write_text(f"127.0.0.1:{port} {TOKEN}\n")
    ups = Upstreams([public.url, private.url], [KEY.public_key()], session,
                    auth=UpstreamAuth.load(token_file=str(tokens)))
    hit = await ups.narinfo(pub.hash_part)
    assert hit is not None and hit.index == 1
    async with await ups.open_nar(hit) as response:
        assert await response.read() == pub.file
    assert public.seen == [None]  # asked first, never given the token
    assert set(private.seen) == {f"Bearer {TOKEN}"}


# --- a gateway in front of a private upstream ----------------------------------------------


async def narinfo_and_file(session: aiohttp.ClientSession, url: str,
                           pub: Published) -> tuple[int, bytes | None]:
    """The gateway's status for ``pub``'s narinfo and, on 200, the file its URL names."""
    async with session.get(f"{url}/{pub.hash_part}.narinfo") as resp:
        if resp.status != 200:
            return resp.status, None
        text = await resp.text()
    nar_url = next(line.split(": ", 1)[1] for line in text.splitlines()
                   if line.startswith("URL: "))
    assert nar_url.startswith("upstream/0/")
    async with session.get(f"{url}/{nar_url}") as resp:
        assert resp.status == 200
        return 200, await resp.read()


async def test_a_gateway_serves_a_private_upstream_only_with_its_credentials(
        guarded: StartGuarded, session: Session, tmp_path: Path) -> None:
    basic_guarded = await guarded(basic_value("ci", NETRC_PASSWORD))
    bearer_guarded = await guarded(f"Bearer {TOKEN}")
    pub = publish(44)
    basic_guarded.cache.add(pub)
    bearer_guarded.cache.add(pub)
    netrc = netrc_for(tmp_path / "netrc")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"127.0.0.1:{bearer_guarded.url.rsplit(':', 1)[1]} {TOKEN}\n")
    key = KEY.public_key().text()
    # (the gateways start while this loop waits: the fake upstreams are asked only later)
    with running_network(tmp_path, publisher=new_publisher("up-auth-1")[0]) as net:
        with_netrc = net.start_gateway("with-netrc", extra=(
            "--upstream", basic_guarded.url, "--upstream-key", key,
            "--upstream-netrc", str(netrc)))
        with_token = net.start_gateway("with-token", extra=(
            "--upstream", bearer_guarded.url, "--upstream-key", key,
            "--upstream-token-file", str(tokens)))
        without = net.start_gateway("without", extra=(
            "--upstream", basic_guarded.url, "--upstream-key", key))
        assert await narinfo_and_file(session, with_netrc.url, pub) == (200, pub.file)
        assert await narinfo_and_file(session, with_token.url, pub) == (200, pub.file)
        assert await narinfo_and_file(session, without.url, pub) == (404, None)
        assert None in basic_guarded.seen  # the gateway without the netrc did ask
        logs = {g.name: g.log_path.read_text() for g in (with_netrc, with_token, without)}
    assert f"upstream {basic_guarded.url}: basic auth (netrc machine 127.0.0.1)" in \
        logs["with-netrc"]
    assert "reads are open (no --read-auth): anyone who reaches this gateway reads the " \
           "private upstream(s)" in logs["with-netrc"]
    assert "credentials are needed (--upstream-netrc" in logs["without"]
    for text in logs.values():
        assert NETRC_PASSWORD not in text and TOKEN not in text


def test_upstream_credentials_need_an_upstream_and_a_clean_url(tmp_path: Path) -> None:
    network = tmp_path / "network.toml"
    urls = [arg for i in range(6) for arg in ("--node", f"http://127.0.0.1:{9500 + i}")]
    res = CliRunner().invoke(main, ["network", "init", "-k", "4", "-m", "2", "--publisher",
                                    new_publisher("opts-2")[0].public.text(), *urls,
                                    "-o", str(network)])
    assert res.exit_code == 0, res.output
    netrc = netrc_for(tmp_path / "netrc")
    alone = CliRunner().invoke(main, ["serve", "--network", str(network),
                                      "--upstream-netrc", str(netrc)])
    assert alone.exit_code == 2 and "--upstream-netrc and --upstream-token-file need " \
                                    "--upstream" in alone.output
    inline = CliRunner().invoke(main, [
        "serve", "--network", str(network), "--upstream-key", KEY.public_key().text(),
        "--upstream", f"http://ci:{NETRC_PASSWORD}@127.0.0.1:1"])
    assert inline.exit_code == 2 and "carries credentials" in inline.output
    assert NETRC_PASSWORD not in inline.output
    bad = tmp_path / "tokens"
    bad.write_text(f"{TOKEN}\n")
    refused = CliRunner().invoke(main, [
        "serve", "--network", str(network), "--upstream-key", KEY.public_key().text(),
        "--upstream", "http://127.0.0.1:1", "--upstream-token-file", str(bad)])
    assert refused.exit_code == 1 and f"{bad} line 1: want HOST TOKEN" in refused.output
    assert TOKEN not in refused.output
