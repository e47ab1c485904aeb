"""session-rs's observed behaviour, replayed byte for byte at our servers and our clients.

No Rust toolchain is needed: `rawpeer.RawPeer` writes and expects the exact bytes
docs/protocol.md records from session-rs 0.1.3 (its handshake headers, its 101, its split
frame writes, its close frames without a code, its close-answering, its empty pongs, its
server that never closes the TCP connection, its `200 OK` to a plain GET). Each test runs
against both adapters, and a normal end must log no warning or error.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from session_core import Config, HandshakeRejected, RemoteError, SessionClosed

from .rawpeer import (
    CLOSE,
    PING,
    PONG,
    SESSION_RS_ACCEPT,
    TEXT,
    TRANSCRIPT,
    WELCOME,
    FakeServer,
    Frame,
    RawPeer,
    close_payload,
    raw_client,
    session_rs_101,
    session_rs_upgrade,
)
from .support import ADAPTERS, KITS, AddArgs, add, assert_quiet, echo, fail, serving, welcome

#: A keepalive short enough to see several pings in a second.
KEEPALIVE = Config(keepalive_interval=0.1, keepalive_timeout=0.3)
#: How long the keepalive tests keep a session idle.
IDLE = 1.0
#: Seconds within which our side must drop a connection whose close handshake is over.
PROMPT = 1.0

# -- session-rs's client at our server --------------------------------------------------


def open_as_session_rs_client(peer: RawPeer, port: int, path: str = "/") -> None:
    """Send session-rs's upgrade request; check the 101 and the welcome that follows."""
    peer.sock.sendall(session_rs_upgrade(port, path))
    head = peer.read_head()
    assert head.start == "HTTP/1.1 101 Switching Protocols"
    assert head.headers["upgrade"].lower() == "websocket"
    assert "upgrade" in head.headers["connection"].lower()
    assert head.headers["sec-websocket-accept"] == SESSION_RS_ACCEPT
    # session-rs asks for no extension and no subprotocol: none may be imposed on it.
    assert "sec-websocket-extensions" not in head.headers
    assert "sec-websocket-protocol" not in head.headers
    assert peer.read_text() == WELCOME


@pytest.mark.parametrize("waits_for_answer", [True, False], ids=["waits", "drops"])
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_session_rs_client_transcript_at_our_server(
    adapter: str, waits_for_answer: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The captured exchange, byte for byte, then session-rs's close: a frame without a
    code, and either it waits for our answer (and bounces it, as it answers every close
    frame) or it drops the TCP connection at once. Both are a normal end, 1005."""
    with serving(adapter) as served, raw_client(served.port) as peer:
        open_as_session_rs_client(peer, served.port, "/rs?client=1")
        for request, response in TRANSCRIPT:
            peer.send_text(request)
            assert peer.read_text() == response
        peer.write_frame(CLOSE)
        if waits_for_answer:
            answer = peer.read_frame()
            assert (answer.opcode, answer.payload, answer.masked) == (CLOSE, b"", False)
            peer.write_frame(CLOSE)  # session-rs answers our answer: it must stay unanswered
            assert peer.expect_eof(within=PROMPT) < PROMPT
        else:
            peer.sock.close()  # with our answer possibly unread: the kernel may send a reset
        assert served.record.wait("opened") == [("/rs?client=1",)]
        assert served.record.wait("closed") == [(1005, "")]
    assert_quiet(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_our_server_closes_and_session_rs_answers(adapter: str, caplog: pytest.LogCaptureFixture) -> None:
    """Our server closes with a code and reason; session-rs answers with a close frame
    without a code. The handshake is over: our server drops the connection, sends nothing
    more, and the session ended with our code."""
    with serving(adapter) as served, raw_client(served.port) as peer:
        open_as_session_rs_client(peer, served.port)
        peer.send_text('{"type":"request","id":1,"method":"close_me","data":{"code":4001,"reason":"bye"}}')
        ours = peer.read_frame()
        assert (ours.opcode, ours.payload) == (CLOSE, close_payload(4001, "bye"))
        peer.write_frame(CLOSE)
        assert peer.expect_eof(within=PROMPT) < PROMPT
        assert served.record.wait("closed") == [(4001, "bye")]
    assert_quiet(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_empty_pongs_keep_our_server_alive(adapter: str, caplog: pytest.LogCaptureFixture) -> None:
    """session-rs answers every ping with an empty pong: our server's keepalive counts it
    and keeps the session open for many intervals (the control test below shows the same
    keepalive dropping a peer that does not answer)."""
    pings: list[Frame] = []

    def answer(ping: Frame) -> None:
        pings.append(ping)
        peer.write_frame(PONG)  # empty, whatever the ping carried

    with serving(adapter, config=KEEPALIVE) as served, raw_client(served.port) as peer:
        open_as_session_rs_client(peer, served.port)
        end = time.monotonic() + IDLE
        while time.monotonic() < end:
            frame = peer.read_frame()
            assert frame.opcode == PING, frame
            answer(frame)
        assert len(pings) >= 4, pings
        assert all(ping.payload for ping in pings)  # ours carry a payload; the pong did not
        request, response = TRANSCRIPT[1]
        peer.send_text(request)
        assert peer.read_until(TEXT, on_ping=answer).payload.decode() == response
        peer.write_frame(CLOSE)
        assert peer.read_until(CLOSE, on_ping=answer).payload == b""
        peer.expect_eof(within=PROMPT)
        assert served.record.wait("closed") == [(1005, "")]
    assert_quiet(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_control_our_server_drops_a_peer_that_never_pongs(adapter: str) -> None:
    """The control for the test above: with the same keepalive, no pong fails the
    connection with 1011 in about interval + timeout."""
    with serving(adapter, config=KEEPALIVE) as served, raw_client(served.port) as peer:
        open_as_session_rs_client(peer, served.port)
        start = time.monotonic()
        close = peer.read_until(CLOSE)  # pings are left unanswered
        assert time.monotonic() - start < 0.1 + 0.3 + 0.5
        assert close.payload[:2] == close_payload(1011)
        peer.expect_eof(within=PROMPT)
        assert served.record.wait("closed")[0][0] == 1011


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_plain_get_is_answered_200_ok(adapter: str) -> None:
    """As session-rs's server does: a GET without an upgrade gets `200 OK`, body `OK`."""
    with serving(adapter) as served, raw_client(served.port) as peer:
        peer.sock.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        head = peer.read_head()
        assert head.start.startswith("HTTP/1.1 200 ")
        assert peer._take(int(head.headers["content-length"])) == b"OK"
    # A plain GET opens no session.
    assert served.record.all("opened") == []


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_wrong_websocket_version_is_refused(adapter: str) -> None:
    """session-rs's server answers a wrong version with 426; RFC 6455 4.4 asks for the
    versions the server speaks in `Sec-WebSocket-Version`."""
    with serving(adapter) as served, raw_client(served.port) as peer:
        upgrade = session_rs_upgrade(served.port).replace(b"Version: 13", b"Version: 8")
        peer.sock.sendall(upgrade)
        head = peer.read_head()
        assert head.start.startswith("HTTP/1.1 426 ")
        assert head.headers["sec-websocket-version"] == "13"
    assert served.record.all("opened") == []


# -- session-rs's server for our clients ------------------------------------------------


def accept_as_session_rs_server(peer: RawPeer, port: int, path: str = "/") -> None:
    """Check our client's upgrade request, and answer it with session-rs's 101, alone."""
    head = peer.read_head()
    assert head.start == f"GET {path} HTTP/1.1"
    assert head.headers["host"] == f"127.0.0.1:{port}"
    assert head.headers["upgrade"].lower() == "websocket"
    assert "upgrade" in head.headers["connection"].lower()
    assert head.headers["sec-websocket-version"] == "13"
    # session-rs's server would ignore an offer it cannot honour; none is made.
    assert "sec-websocket-extensions" not in head.headers
    peer.sock.sendall(session_rs_101(head.headers["sec-websocket-key"]))
    time.sleep(0.02)  # its client drops what comes with the 101: so it never sends both at once


@pytest.mark.parametrize("kit_name", ADAPTERS)
def test_our_client_with_a_session_rs_server(kit_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """The captured exchange, byte for byte, with our client: session-rs's 101, its split
    frames, then our close (1000). session-rs answers it with a close frame without a code
    and never closes the TCP connection: our client closes it, promptly."""
    kit = KITS[kit_name]

    def script(peer: RawPeer) -> float:
        accept_as_session_rs_server(peer, server.port, "/rs?x=1")
        peer.send_text(WELCOME)
        for request, response in TRANSCRIPT:
            assert peer.read_text() == request
            peer.send_text(response)
        ours = peer.read_frame()
        assert (ours.opcode, ours.masked, ours.payload) == (CLOSE, True, close_payload(1000))
        peer.write_frame(CLOSE)
        return peer.expect_eof(within=PROMPT)

    async def client() -> float:
        async with kit.connect(server.url + "rs?x=1") as session:
            welcomed = kit.event()
            greetings: list[str] = []

            @session.on_notification(welcome)
            async def _welcome(text: str) -> None:
                greetings.append(text)
                welcomed.set()

            assert await session.request(echo, {"x": [1, 2, 3]}) == {"x": [1, 2, 3]}
            assert await session.request(add, AddArgs(2, 3)) == 5
            with pytest.raises(RemoteError) as failed:
                await session.request(fail, None)
            assert failed.value.error == "boom"
            await kit.within(5, welcomed.wait())
            assert greetings == ["hi"]
            start = time.monotonic()
            await session.close()
            took = time.monotonic() - start
            assert (session.close_code, session.close_reason) == (1000, "")
            return took

    with FakeServer(script) as server:
        took = kit.run(client, 15)
    assert took < PROMPT
    assert server.result < PROMPT  # the fake server saw the end of the stream that soon
    assert_quiet(caplog)


@pytest.mark.parametrize("kit_name", ADAPTERS)
def test_session_rs_server_closes_without_a_code(kit_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """session-rs's server closes with a close frame without a code while our request
    waits: the request fails at once with 1005, our client answers (without a code too),
    ignores session-rs's answer to that answer, and closes the TCP connection itself."""
    kit = KITS[kit_name]

    def script(peer: RawPeer) -> float:
        accept_as_session_rs_server(peer, server.port)
        assert peer.read_text() == TRANSCRIPT[0][0]
        peer.write_frame(CLOSE)
        answer = peer.read_frame()
        assert (answer.opcode, answer.masked, answer.payload) == (CLOSE, True, b"")
        # session-rs answers every close frame; our client may have gone already: fine.
        with contextlib.suppress(OSError):
            peer.write_frame(CLOSE)
        return peer.expect_eof(within=PROMPT)

    async def client() -> None:
        async with kit.connect(server.url) as session:
            with pytest.raises(SessionClosed) as closed:
                await session.request(echo, {"x": [1, 2, 3]})
            assert (closed.value.code, closed.value.reason) == (1005, "")
            await kit.within(PROMPT, session.wait_closed())
            assert (session.close_code, session.close_reason) == (1005, "")

    with FakeServer(script) as server:
        kit.run(client, 15)
    assert server.result < PROMPT
    assert_quiet(caplog)


@pytest.mark.parametrize("kit_name", ADAPTERS)
def test_empty_pongs_keep_our_client_alive(kit_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """session-rs's server answers our client's keepalive pings with empty pongs: the
    session stays open for many intervals and still works."""
    kit = KITS[kit_name]

    def script(peer: RawPeer) -> int:
        pings: list[Frame] = []

        def answer(ping: Frame) -> None:
            pings.append(ping)
            peer.write_frame(PONG)

        accept_as_session_rs_server(peer, server.port)
        request = peer.read_until(TEXT, on_ping=answer)
        assert request.payload.decode() == '{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}'
        peer.send_text('{"type":"response","id":1,"result":5}')
        ours = peer.read_until(CLOSE, on_ping=answer)
        assert ours.payload == close_payload(1000)
        peer.write_frame(CLOSE)
        peer.expect_eof(within=PROMPT)
        return len(pings)

    async def client() -> None:
        async with kit.connect(server.url, config=KEEPALIVE) as session:
            await kit.sleep(IDLE)
            assert not session.closed
            assert await session.request(add, AddArgs(2, 3)) == 5

    with FakeServer(script) as server:
        kit.run(client, 15)
    assert server.result >= 4
    assert_quiet(caplog)


@pytest.mark.parametrize("kit_name", ADAPTERS)
def test_control_our_client_drops_a_server_that_never_pongs(kit_name: str) -> None:
    """The control for the test above: no pong fails the session with 1011."""
    kit = KITS[kit_name]

    def script(peer: RawPeer) -> bytes:
        accept_as_session_rs_server(peer, server.port)
        close = peer.read_until(CLOSE)  # pings are left unanswered
        peer.expect_eof(within=PROMPT)
        return close.payload

    async def client() -> None:
        start = time.monotonic()
        async with kit.connect(server.url, config=KEEPALIVE) as session:
            await kit.within(2, session.wait_closed())
            assert session.close_code == 1011
        assert time.monotonic() - start < 0.1 + 0.3 + 0.5

    with FakeServer(script) as server:
        kit.run(client, 15)
    assert server.result[:2] == close_payload(1011)


@pytest.mark.parametrize("kit_name", ADAPTERS)
def test_our_client_refused_with_200_ok(kit_name: str) -> None:
    """A server that answers the upgrade with session-rs's plain-GET answer (`200 OK`,
    body `OK`) and keeps the connection open: the handshake fails at once, with both."""
    kit = KITS[kit_name]

    def script(peer: RawPeer) -> float:
        peer.read_head()
        peer.sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nOK")
        return peer.expect_eof(within=PROMPT)

    async def client() -> None:
        with pytest.raises(HandshakeRejected) as rejected:
            async with kit.connect(server.url):
                raise AssertionError("the session opened")
        assert (rejected.value.status_code, rejected.value.body) == (200, b"OK")

    with FakeServer(script) as server:
        kit.run(client, 15)
    assert server.result < PROMPT
