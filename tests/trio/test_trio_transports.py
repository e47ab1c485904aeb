"""TLS, unix sockets, and back-pressure on the peer's requests."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

import pytest
import trio
import trustme

import session_trio
from session_core import Config, Method, ResponseReceived, SessionClosed

from .support import AddArgs, RawPeer, add, basic_on_session, echo, running_server, serve_basics


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


async def test_wss_with_a_trusted_certificate(ca: trustme.CA) -> None:
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with running_server(scheme="wss", ssl_context=_server_context(ca)) as url:
        assert url.startswith("wss://")
        async with session_trio.connect(url, ssl_context=client_context) as session:
            assert await session.request(add, AddArgs(20, 22)) == 42
            assert session.remote_address[0] == "127.0.0.1"
            big = "x" * 300_000  # several TLS records, several reads
            echoed = await session.request("echo", big)
            assert echoed == big
        assert session.close_code == 1000


async def test_wss_verifies_the_certificate_by_default(ca: trustme.CA) -> None:
    async with running_server(scheme="wss", ssl_context=_server_context(ca)) as url:
        with pytest.raises(ssl.SSLCertVerificationError):
            async with session_trio.connect(url):
                pass
        # The server is unharmed.
        client_context = ssl.create_default_context()
        ca.configure_trust(client_context)
        async with session_trio.connect(url, ssl_context=client_context) as session:
            assert await session.request(add, AddArgs(1, 1)) == 2


async def test_serve_listeners_on_a_unix_socket_listener(tmp_path: Path) -> None:
    path = str(tmp_path / "session.sock")
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(session_trio.serve_listeners, basic_on_session, [trio.SocketListener(sock)])
        await nursery.start(serve)
        async with session_trio.unix_connect(path) as session:
            assert await session.request(add, AddArgs(3, 4)) == 7
        # A raw peer speaks the same protocol over the same socket.
        stream = await trio.open_unix_socket(path)
        peer = await RawPeer.connect(0, stream=stream)
        peer.conn.send_request(add, AddArgs(5, 6))
        await peer.flush()
        answer = await peer.expect(ResponseReceived)
        assert answer.result == 11
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_unix_serve_replaces_a_stale_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    stale = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await stale.bind(path)  # a file left by a server that is gone
    stale.close()
    paths: list[str] = []

    async def on_session(session: session_trio.Session) -> None:
        paths.append(session.path)
        serve_basics(session)

    async with trio.open_nursery() as nursery:
        await nursery.start(session_trio.unix_serve, on_session, path)
        async with session_trio.unix_connect(path, "/over/unix?x=1") as session:
            assert session.path == "/over/unix?x=1"
            assert await session.request(add, AddArgs(1, 2)) == 3
        nursery.cancel_scope.cancel()
    assert paths == ["/over/unix?x=1"]


slow = Method("slow", request=int, response=int, error=str)


@pytest.mark.autojump
async def test_back_pressure_bounds_the_handlers_running_at_once() -> None:
    running = 0
    most = 0

    async def on_session(session: session_trio.Session) -> None:
        @session.on_request(slow)
        async def _(n: int) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await trio.sleep(1)
            running -= 1
            return n * 2

    config = Config(max_incoming_requests=2)
    results: dict[int, int] = {}
    async with running_server(on_session, config=config) as url, session_trio.connect(url) as session:
        start = trio.current_time()

        async def one(n: int) -> None:
            results[n] = await session.request(slow, n)

        async with trio.open_nursery() as nursery:
            for n in range(12):
                nursery.start_soon(one, n)
        elapsed = trio.current_time() - start
    assert results == {n: n * 2 for n in range(12)}
    assert most == 2
    assert elapsed == pytest.approx(6, abs=0.5)  # 12 requests, 2 at a time, 1 s each


hang = Method("hang", request=None, response=None, error=None)
blob = Method("blob", request=str, response=None, error=None)


async def _hang(_: None) -> None:
    await trio.sleep_forever()


async def _closed_request(session: session_trio.Session) -> None:
    with pytest.raises(SessionClosed):
        await session.request(hang, None)


@pytest.mark.autojump
async def test_a_peer_that_reads_no_answers_meets_back_pressure() -> None:
    # A raw client sends requests and never reads. Once the socket takes no more answers,
    # the handlers' answers wait (keeping their requests in flight), the server stops
    # reading at the bound, and the client's writes stall: the server's outbox stays small.
    # Reading at last, the client gets every answer.
    sessions: list[session_trio.Session] = []

    async def on_session(session: session_trio.Session) -> None:
        sessions.append(session)
        serve_basics(session)

    payload = "x" * 16384
    sent = 0
    quiet = Config(keepalive_interval=None)  # a side that does not read answers no ping
    async with running_server(
        on_session, config=Config(max_incoming_requests=4, keepalive_interval=None)
    ) as url:
        peer = await RawPeer.connect(_port(url), config=quiet)
        with trio.move_on_after(5):
            while sent < 4000:  # 64 MB of answers: far more than any socket buffer
                peer.conn.send_request(echo, payload)
                await peer.flush()
                sent += 1
        assert 0 < sent < 4000
        [server] = sessions
        assert sum(map(len, server._outbox)) < 10 * len(payload)
        answers = 0
        while answers < sent:
            answer = await peer.expect(ResponseReceived)
            assert answer.result == payload
            answers += 1
        await peer.stream.aclose()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))
