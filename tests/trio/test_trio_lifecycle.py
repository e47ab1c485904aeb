"""Opening, refusing, losing and shutting down sessions."""

from __future__ import annotations

import functools
import logging
import ssl
from typing import Any

import pytest
import trio

import session_trio
from session_core import (
    Accept,
    Config,
    ConnectionClosed,
    HandshakeError,
    HandshakeRejected,
    LocalProtocolError,
    Reject,
    RequestReceived,
    SessionClosed,
    UpgradeRequested,
)
from tests.helpers import CLOSE, TEXT, client_frame

from .support import (
    AddArgs,
    RawPeer,
    add,
    basic_on_session,
    port_of,
    raw_server,
    running_server,
    sleep,
    welcome,
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


async def test_a_peer_vanishing_mid_request_fails_it_at_once() -> None:
    async def vanish(stream: trio.SocketStream) -> None:
        peer = await RawPeer.accept(stream)
        await peer.expect(RequestReceived)
        await stream.aclose()  # no close frame: the TCP connection just ends

    async with raw_server(vanish) as port, session_trio.connect(f"ws://127.0.0.1:{port}/") as session:
        with trio.fail_after(2), pytest.raises(SessionClosed) as caught:
            await session.request(add, AddArgs(1, 1))
        assert caught.value.code == 1006
        await session.wait_closed()
        assert session.close_code == 1006


async def test_a_client_vanishing_fails_the_servers_request_at_once() -> None:
    outcome: list[BaseException] = []
    done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        try:
            await session.request(add, AddArgs(1, 1))
        except SessionClosed as exc:
            outcome.append(exc)
        done.set()

    async with running_server(on_session) as url:
        peer = await RawPeer.connect(_port(url))
        await peer.expect(RequestReceived)
        await peer.stream.aclose()
        with trio.fail_after(2):
            await done.wait()
    assert isinstance(outcome[0], SessionClosed)


async def test_server_shutdown_closes_every_session_with_1001() -> None:
    sessions = []
    async with trio.open_nursery() as nursery:
        serve = functools.partial(session_trio.serve, basic_on_session, "127.0.0.1", 0)
        listeners = await nursery.start(serve)
        url = f"ws://127.0.0.1:{port_of(listeners[0])}/"
        async with session_trio.connect(url) as first, session_trio.connect(url) as second:
            sessions += [first, second]
            failures: list[SessionClosed] = []

            async def pending() -> None:
                try:
                    await first.request(sleep, 60.0)
                except SessionClosed as exc:
                    failures.append(exc)

            async with trio.open_nursery() as waiting:
                waiting.start_soon(pending)
                assert await second.request(add, AddArgs(1, 1)) == 2  # both are running
                with trio.fail_after(5):
                    nursery.cancel_scope.cancel()  # the server shuts down
                    await first.wait_closed()
                    await second.wait_closed()
            assert [f.code for f in failures] == [1001]
    assert [s.close_code for s in sessions] == [1001, 1001]


async def test_on_upgrade_can_reject_with_status_and_body() -> None:
    def on_upgrade(request: UpgradeRequested, address: Any) -> Reject | None:
        if request.path == "/private":
            return Reject(status_code=403, body=b"nope", headers=(("x-why", "private"),))
        return None

    async with running_server(on_upgrade=on_upgrade) as url:
        with pytest.raises(HandshakeRejected) as caught:
            async with session_trio.connect(url + "private"):
                pass
        assert caught.value.status_code == 403
        assert caught.value.body == b"nope"
        assert (b"x-why", b"private") in caught.value.headers
        async with session_trio.connect(url + "public") as session:
            assert await session.request(add, AddArgs(1, 1)) == 2


async def test_an_async_on_upgrade_and_a_failing_one() -> None:
    async def slow_yes(request: UpgradeRequested, address: Any) -> Accept:
        await trio.sleep(0.01)
        return Accept()

    async with running_server(on_upgrade=slow_yes) as url, session_trio.connect(url) as session:
        assert await session.request(add, AddArgs(1, 1)) == 2

    def broken(request: UpgradeRequested, address: Any) -> Any:
        if request.path == "/wrong-type":
            return "yes"  # neither Accept, Reject nor None
        raise RuntimeError("hook broke")

    async with running_server(on_upgrade=broken) as url:
        for path in ("", "wrong-type"):
            with pytest.raises(HandshakeRejected) as caught:
                async with session_trio.connect(url + path):
                    pass
            assert caught.value.status_code == 500


async def test_a_plain_http_get_gets_200_ok() -> None:
    async with running_server() as url:
        stream = await trio.open_tcp_stream("127.0.0.1", _port(url))
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while data := await stream.receive_some(65536):
            answer += data
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nOK")


async def test_a_refused_connection_raises_oserror() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there any more
    with pytest.raises(OSError):
        async with session_trio.connect(f"ws://127.0.0.1:{port}/"):
            pass


@pytest.mark.autojump
async def test_a_server_that_never_answers_times_out() -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with raw_server(mute) as port:
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            async with session_trio.connect(f"ws://127.0.0.1:{port}/", connect_timeout=4):
                pass
        assert trio.current_time() - start == pytest.approx(4)


async def test_a_server_that_hangs_up_during_the_handshake() -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.aclose()

    async with raw_server(hang_up) as port:
        with pytest.raises(HandshakeError) as caught:
            async with session_trio.connect(f"ws://127.0.0.1:{port}/"):
                pass
        assert not isinstance(caught.value, HandshakeRejected)


async def test_a_bad_url_is_refused_before_connecting() -> None:
    with pytest.raises(LocalProtocolError):
        async with session_trio.connect("http://127.0.0.1:1/"):
            pass
    with pytest.raises(LocalProtocolError, match="wss://"):
        async with session_trio.connect("ws://127.0.0.1:1/", ssl_context=ssl.create_default_context()):
            pass


async def test_async_with_session_in_on_session_closes_it_with_1000() -> None:
    async def on_session(session: session_trio.Session) -> None:
        async with session:
            await session.notify("bye", None)

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        await session.wait_closed()
        assert session.close_code == 1000


async def test_a_broken_connection_does_not_take_the_server_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_server() as url:
        for garbage in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"):
            stream = await trio.open_tcp_stream("127.0.0.1", _port(url))
            await stream.send_all(garbage)
            while await stream.receive_some(65536):
                pass
            await stream.aclose()
        async with session_trio.connect(url) as session:
            assert await session.request(add, AddArgs(2, 2)) == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.autojump
async def test_an_upgrade_hook_slower_than_the_handshake_timeout(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = trio.Event()

    async def dawdle(request: UpgradeRequested, address: Any) -> None:
        try:
            await trio.sleep(1000)
        finally:
            cancelled.set()

    config = Config(handshake_timeout=5)
    async with running_server(on_upgrade=dawdle, config=config) as url:
        start = trio.current_time()
        with pytest.raises(HandshakeError):
            async with session_trio.connect(url, connect_timeout=100):
                pass
        assert trio.current_time() - start == pytest.approx(5)
        await cancelled.wait()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _close_frame(code: int, reason: bytes) -> bytes:
    return client_frame(CLOSE, code.to_bytes(2, "big") + reason)


async def test_a_notification_in_the_same_read_as_the_close_reaches_its_handler() -> None:
    # As a peer that writes `send(note); close()`: the notification was received while the
    # session was open, so its handler gets it (and may still await) after the end.
    got: list[str] = []
    done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        @session.on_notification(welcome)
        async def _(text: str) -> None:
            await trio.sleep(0.01)
            got.append(text)

        await session.wait_closed()
        done.set()

    async with running_server(on_session) as url:
        peer = await RawPeer.connect(_port(url))
        note = b'{"type":"notification","method":"welcome","data":"last words"}'
        await peer.stream.send_all(client_frame(TEXT, note) + _close_frame(4000, b"bye"))
        assert (await peer.expect(ConnectionClosed)).code == 4000
        await peer.stream.aclose()
        await done.wait()
    assert got == ["last words"]


@pytest.mark.autojump
async def test_notification_handlers_get_a_bounded_grace_after_the_end() -> None:
    ended: list[float] = []
    cancelled: list[float] = []

    async def on_session(session: session_trio.Session) -> None:
        @session.on_notification(welcome)
        async def _(text: str) -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.append(trio.current_time())

        await session.wait_closed()
        ended.append(trio.current_time())

    async with running_server(on_session) as url:
        peer = await RawPeer.connect(_port(url))
        note = b'{"type":"notification","method":"welcome","data":"hello"}'
        await peer.stream.send_all(client_frame(TEXT, note) + _close_frame(1000, b""))
        await peer.expect(ConnectionClosed)
        closed_at = trio.current_time()
        await peer.stream.aclose()
        while not ended:
            await trio.sleep(0.1)
    assert cancelled[0] - closed_at == pytest.approx(session_trio._session.TEARDOWN_GRACE, abs=0.1)
    assert ended[0] >= cancelled[0]


@pytest.mark.autojump
async def test_a_notification_handler_can_close_its_own_session_at_once() -> None:
    took: list[float] = []

    async def on_session(session: session_trio.Session) -> None:
        @session.on_notification(welcome)
        async def _(text: str) -> None:
            start = trio.current_time()
            await session.close(4000, text)  # waits for the end, not for itself
            took.append(trio.current_time() - start)

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        start = trio.current_time()
        await session.notify(welcome, "bye")
        await session.wait_closed()
        assert session.close_code == 4000
        assert trio.current_time() - start < 0.5
    assert took and took[0] < 0.5
