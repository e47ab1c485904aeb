"""Closing, vanishing peers, shutdown, timeouts, keepalive and cancellation, on both adapters
and every loop (in real time, kept short: trio's virtual-time versions stay in tests/trio)."""

from __future__ import annotations

import functools
import logging
import ssl
import time
from typing import Any

import pytest
import trio

from session_core import (
    CANCEL_METHOD,
    Accept,
    Config,
    HandshakeError,
    HandshakeRejected,
    LocalProtocolError,
    Method,
    Reject,
    SessionClosed,
    UpgradeRequested,
)
from tests import wire
from tests.methods import AddArgs, AnySession, add, basic_on_session, serve_basics, sleep, tick, welcome

from .backend import Backend
from .peers import RawPeer, RawServer, accept_upgrade

hang = Method("hang", request=None, response=None, error=None)


# -- closing ---------------------------------------------------------------------------


async def test_a_close_code_and_reason_reach_both_ends(backend: Backend) -> None:
    server_side: list[AnySession] = []
    ended = backend.event()

    async def on_session(session: AnySession) -> None:
        server_side.append(session)
        await session.wait_closed()
        ended.set()

    async with backend.serve(on_session) as server:
        async with backend.connect(server.url) as session:
            await session.close(4000, "bye")
            assert session.closed
            assert (session.close_code, session.close_reason) == (4000, "bye")
        await ended.wait()
    [peer] = server_side
    assert (peer.close_code, peer.close_reason) == (4000, "bye")


async def test_after_close_every_call_raises_session_closed(backend: Backend) -> None:
    async with backend.serve(basic_on_session) as server:
        async with backend.connect(server.url) as session:
            pass
        assert session.closed
        assert session.close_code == 1000
        with pytest.raises(SessionClosed):
            await session.request(add, AddArgs(1, 1))
        with pytest.raises(SessionClosed):
            await session.notify(tick, 1)
        with pytest.raises(SessionClosed):
            await session.notify("x", None)
        with pytest.raises(SessionClosed):
            await session.ping()
        await session.close()  # closing again does nothing
        await session.wait_closed()


async def test_the_server_closing_a_session_fails_pending_requests_at_once(backend: Backend) -> None:
    quit_method = Method("quit", request=None, response=None, error=None)

    async def on_session(session: AnySession) -> None:
        serve_basics(session)

        @session.on_request(quit_method)
        async def _quit(_: None) -> None:
            await session.close(4001, "asked to quit")  # from inside a handler

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:

        async def pending() -> None:
            await session.request(sleep, 10.0)

        async def quit_soon() -> float:
            await backend.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(SessionClosed):
                await session.request(quit_method, None)
            return started

        pending_outcome, started = await backend.gather(pending, quit_soon)
        assert isinstance(started, float)
        assert time.monotonic() - started < 1
        assert isinstance(pending_outcome, SessionClosed)
        assert pending_outcome.code == 4001
        await session.wait_closed()
        assert (session.close_code, session.close_reason) == (4001, "asked to quit")


async def test_our_close_fails_our_pending_requests_at_once(backend: Backend) -> None:
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:

        async def pending() -> None:
            await session.request(sleep, 10.0)

        async def close_soon() -> float:
            await backend.sleep(0.05)
            started = time.monotonic()
            await session.close()
            return started

        *outcomes, started = await backend.gather(pending, pending, pending, close_soon)
        assert all(isinstance(outcome, SessionClosed) for outcome in outcomes)
        assert isinstance(started, float)
        assert time.monotonic() - started < 1


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_the_peer_vanishing_mid_request_fails_it_at_once(backend: Backend, how: str) -> None:
    def vanish(peer: RawPeer) -> None:
        accept_upgrade(peer)
        peer.recv_frame()  # the request has arrived
        if how == "rst":
            peer.reset()
        else:
            peer.close()  # no close frame: the TCP connection just ends

    with RawServer(vanish) as raw:
        async with backend.connect(raw.url) as session:
            started = time.monotonic()
            with pytest.raises(SessionClosed) as closed:
                await session.request(add, AddArgs(1, 2))
            assert time.monotonic() - started < 1
            assert closed.value.code == 1006
            await session.wait_closed()
            assert session.close_code == 1006
    assert not raw.errors


async def test_a_client_vanishing_fails_the_servers_request_at_once(backend: Backend) -> None:
    outcome: list[BaseException] = []
    done = backend.event()

    async def on_session(session: AnySession) -> None:
        try:
            await session.request(add, AddArgs(1, 1))
        except SessionClosed as exc:
            outcome.append(exc)
        done.set()

    def vanish(port: int) -> None:
        peer = RawPeer.connect(port)
        assert b" 101 " in peer.handshake(port)
        peer.recv_frame()  # the server's request
        peer.close()

    async with backend.serve(on_session) as server:
        await backend.to_thread(lambda: vanish(server.port))
        await backend.within(2, done.wait)
    assert isinstance(outcome[0], SessionClosed)


async def test_a_close_frame_without_code_reads_as_1005(backend: Backend) -> None:
    # As session-rs closes.
    def close_at_once(peer: RawPeer) -> None:
        accept_upgrade(peer)
        peer.send_frame(wire.CLOSE)
        peer.frames_until_close()  # the client answers and closes

    with RawServer(close_at_once) as raw:
        async with backend.connect(raw.url) as session:
            await session.wait_closed()
            assert session.close_code == 1005
    assert not raw.errors


async def test_server_shutdown_closes_every_session_with_1001(backend: Backend) -> None:
    handler_cancelled = backend.event()
    on_session_cancelled = backend.event()

    async def on_session(session: AnySession) -> None:
        serve_basics(session)

        @session.on_request(hang)
        async def _hang(_: None) -> None:
            try:
                await backend.sleep(100)
            except BaseException as exc:
                if backend.is_cancellation(exc):
                    handler_cancelled.set()
                raise

        try:
            await backend.sleep(100)  # on_session still running at shutdown
        except BaseException as exc:
            if backend.is_cancellation(exc):
                on_session_cancelled.set()
            raise

    async with (
        backend.serve(on_session) as server,
        backend.connect(server.url) as first,
        backend.connect(server.url) as second,
    ):

        async def pending() -> None:
            await first.request(hang, None)

        async def shut_down() -> None:
            assert await second.request(add, AddArgs(1, 1)) == 2  # both are running
            await backend.within(5, server.shutdown)

        [failure, shut] = await backend.gather(pending, shut_down)
        assert shut is None
        assert isinstance(failure, SessionClosed)
        assert failure.code == 1001
        await first.wait_closed()
        await second.wait_closed()
        assert [first.close_code, second.close_code] == [1001, 1001]
        assert handler_cancelled.is_set() and on_session_cancelled.is_set()


async def test_a_failing_on_session_closes_the_session_with_1011(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_session(session: AnySession) -> None:
        serve_basics(session)
        await backend.sleep(0)
        raise RuntimeError("on_session broke")

    caplog.set_level(logging.ERROR)
    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        await session.wait_closed()
        assert session.close_code == 1011
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "on_session" in r.getMessage()]
    assert failures and failures[0].exc_info is not None
    assert "on_session broke" in str(failures[0].exc_info[1])


async def test_a_raw_client_sees_the_1011_close_frame(backend: Backend) -> None:
    async def on_session(session: AnySession) -> None:
        raise RuntimeError("immediately")

    def raw_client(port: int) -> list[tuple[int, bytes]]:
        peer = RawPeer.connect(port)
        try:
            assert b" 101 " in peer.handshake(port)
            return peer.frames_until_close(answer_close=True)
        finally:
            peer.close()

    async with backend.serve(on_session) as server:
        frames = await backend.to_thread(lambda: raw_client(server.port))
    closes = [payload for opcode, payload in frames if opcode == wire.CLOSE]
    assert [wire.parse_close(payload)[0] for payload in closes] == [1011]


async def test_an_exception_in_the_connect_block_propagates_as_itself_with_1001(backend: Backend) -> None:
    ended: list[tuple[int | None, str | None]] = []
    done = backend.event()

    async def on_session(session: AnySession) -> None:
        await session.wait_closed()
        ended.append((session.close_code, session.close_reason))
        done.set()

    async with backend.serve(on_session) as server:
        started = time.monotonic()
        with pytest.raises(KeyError, match="mine"):  # not an exception group
            async with backend.connect(server.url) as session:
                raise KeyError("mine")
        assert time.monotonic() - started < 1  # without waiting for the close handshake
        await backend.within(2, done.wait)
        await session.wait_closed()
        assert session.close_code == 1001
    assert ended == [(1001, "going away")]


async def test_async_with_session_in_on_session_closes_it_with_1000(backend: Backend) -> None:
    async def on_session(session: AnySession) -> None:
        async with session:
            await session.notify("bye", None)

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        await session.wait_closed()
        assert session.close_code == 1000


async def test_a_notification_handler_can_close_its_own_session_at_once(backend: Backend) -> None:
    took: list[float] = []

    async def on_session(session: AnySession) -> None:
        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            start = time.monotonic()
            await session.close(4000, text)  # waits for the end, not for itself
            took.append(time.monotonic() - start)

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        start = time.monotonic()
        await session.notify(welcome, "bye")
        await backend.within(2, session.wait_closed)
        assert session.close_code == 4000
        assert time.monotonic() - start < 0.5
        assert await backend.eventually(lambda: bool(took), 2)
    assert took[0] < 0.5


def _last_words(
    port: int, message: bytes, code: int = 4000, reason: bytes = b"bye"
) -> list[tuple[int, bytes]]:
    """Open a session by hand, then send `message` and a close frame in one write; the frames
    that come back."""
    peer = RawPeer.connect(port)
    try:
        assert b" 101 " in peer.handshake(port)
        peer.sock.sendall(
            wire.client_frame(wire.TEXT, message)
            + wire.client_frame(wire.CLOSE, wire.close_payload(code, reason))
        )
        return peer.frames_until_close()
    finally:
        peer.close()


async def test_a_notification_in_the_same_read_as_the_close_reaches_its_handler(backend: Backend) -> None:
    # As a peer that writes `send(note); close()`: the notification was received while the
    # session was open, so its handler gets it (and may still await) after the end.
    got: list[str] = []
    done = backend.event()

    async def on_session(session: AnySession) -> None:
        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            await backend.sleep(0.01)
            got.append(text)

        await session.wait_closed()
        done.set()

    async with backend.serve(on_session) as server:
        note = b'{"type":"notification","method":"welcome","data":"last words"}'
        frames = await backend.to_thread(lambda: _last_words(server.port, note))
        assert frames == [(wire.CLOSE, wire.close_payload(4000, "bye"))]
        await backend.within(2, done.wait)
        assert await backend.eventually(lambda: bool(got), 2)
    assert got == ["last words"]


async def test_a_request_in_the_same_read_as_the_close_lets_the_server_shut_down(backend: Backend) -> None:
    # The request cannot be answered (no data frame may follow our close frame), but the
    # server must still forget the session and shut down promptly.
    async with backend.serve(basic_on_session) as server:
        request = b'{"type":"request","id":1,"method":"add","data":{"a":1,"b":2}}'
        frames = await backend.to_thread(lambda: _last_words(server.port, request))
        assert frames == [(wire.CLOSE, wire.close_payload(4000, "bye"))]
        await backend.within(2, server.shutdown)


# -- time ------------------------------------------------------------------------------


async def test_request_timeouts_raise_the_builtin_timeout_error_and_cancel_the_handler(
    backend: Backend,
) -> None:
    cancelled: list[float] = []

    async def on_session(session: AnySession) -> None:
        serve_basics(session)

        @session.on_request(sleep)
        async def _sleep(seconds: float) -> float:
            try:
                await backend.sleep(seconds)
            except BaseException as exc:
                if backend.is_cancellation(exc):
                    cancelled.append(seconds)
                raise
            return seconds

    async with (
        backend.serve(on_session) as server,
        backend.connect(server.url, config=Config(request_timeout=0.05)) as session,
    ):
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            await session.request(sleep, 5.0)  # the configured default
        assert not isinstance(caught.value, trio.TooSlowError)
        assert 0.04 < time.monotonic() - started < 1
        # `$/cancel` reached the handler.
        assert await backend.eventually(lambda: cancelled == [5.0], 1)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await session.request(sleep, 6.0, timeout=0.02)  # an explicit one
        assert time.monotonic() - started < 1
        assert await backend.eventually(lambda: cancelled == [5.0, 6.0], 1)
        assert await session.request(sleep, 0.01, timeout=1) == 0.01


async def test_cancelling_a_request_cancels_the_remote_handler_both_ways(backend: Backend) -> None:
    server_started = backend.event()
    server_cancelled = backend.event()
    client_cancelled = backend.event()
    server_results: list[str] = []
    server_done = backend.event()

    def hanging(started: Any, cancelled: Any) -> Any:
        async def handler(_: None) -> None:
            started.set()
            try:
                await backend.sleep(100)
            except BaseException as exc:
                if backend.is_cancellation(exc):
                    cancelled.set()
                raise

        return handler

    async def on_session(session: AnySession) -> None:
        serve_basics(session)
        session.on_request(hang, hanging(server_started, server_cancelled))
        # The server gives up its own request to the client.
        if await backend.cancel_after(0.05, lambda: session.request(hang, None)):
            server_results.append("server cancelled its call")
        total = await session.request(add, AddArgs(1, 2))
        server_results.append(f"then {total}")
        server_done.set()

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        session.on_request(hang, hanging(backend.event(), client_cancelled))
        session.on_request(add, _add)
        await backend.within(2, client_cancelled.wait)
        await backend.within(2, server_done.wait)
        assert server_results == ["server cancelled its call", "then 3"]

        async def call_then_cancel() -> None:
            await session.request(hang, None)

        assert await backend.cancel_after(0.2, call_then_cancel)
        assert server_started.is_set()
        await backend.within(2, server_cancelled.wait)
        assert await session.request(add, AddArgs(1, 2)) == 3  # the session goes on
        assert not session.closed


async def _add(args: AddArgs) -> int:
    return args.a + args.b


async def test_a_cancel_from_the_peer_is_answered_minus_32800(backend: Backend) -> None:
    # A raw client sends `$/cancel` by hand and keeps waiting: our handler is cancelled and
    # the answer is the protocol's "request cancelled" error.
    started = backend.event()
    cancelled = backend.event()

    async def on_session(session: AnySession) -> None:
        @session.on_request(hang)
        async def _hang(_: None) -> None:
            started.set()
            try:
                await backend.sleep(100)
            except BaseException as exc:
                if backend.is_cancellation(exc):
                    cancelled.set()
                raise

    async with backend.serve(on_session) as server:
        peer = await backend.to_thread(lambda: RawPeer.connect(server.port))
        try:
            assert b" 101 " in await backend.to_thread(lambda: peer.handshake(server.port))
            peer.send_frame(wire.TEXT, b'{"type":"request","id":5,"method":"hang","data":null}')
            await backend.within(2, started.wait)
            cancel = f'{{"type":"notification","method":"{CANCEL_METHOD}","data":{{"id":5}}}}'
            peer.send_frame(wire.TEXT, cancel.encode())
            answer = await backend.to_thread(peer.recv_frame)
            assert answer is not None and answer[0] == wire.TEXT
            assert answer[1].startswith(b'{"type":"errorresponse","id":5,"error":{"code":-32800,')
            await backend.within(2, cancelled.wait)
        finally:
            peer.close()


async def test_keepalive_closes_a_peer_that_stops_answering(backend: Backend) -> None:
    config = Config(keepalive_interval=0.05, keepalive_timeout=0.1)
    with RawServer(_never_reads) as raw:
        async with backend.connect(raw.url, config=config) as session:
            started = time.monotonic()
            await backend.within(2, session.wait_closed)
            assert 0.1 < time.monotonic() - started < 1
            assert session.close_code == 1011


async def test_close_gives_up_on_a_peer_that_never_answers(backend: Backend) -> None:
    config = Config(close_timeout=0.2, keepalive_interval=None)
    with RawServer(_never_reads) as raw:
        async with backend.connect(raw.url, config=config) as session:
            started = time.monotonic()

            async def look() -> None:
                await backend.sleep(0.05)
                # Closing is not closed: the code comes once the session has ended.
                assert (session.closed, session.close_code, session.close_reason) == (False, None, None)

            assert await backend.gather(session.close, look) == [None, None]
            assert 0.15 < time.monotonic() - started < 1
            assert session.closed
            assert session.close_code == 1000


def _never_reads(peer: RawPeer) -> None:
    """Accept the upgrade, then read nothing (no pong, no close answer) until the end."""
    accept_upgrade(peer)
    time.sleep(1.5)


async def test_the_server_drops_a_client_that_never_sends_its_upgrade(backend: Backend) -> None:
    def silent_client(port: int) -> bytes:
        peer = RawPeer.connect(port, timeout=2)
        try:
            return peer.sock.recv(100)
        finally:
            peer.close()

    async with backend.serve(basic_on_session, config=Config(handshake_timeout=0.1)) as server:
        started = time.monotonic()
        assert await backend.to_thread(lambda: silent_client(server.port)) == b""
        assert time.monotonic() - started < 1


# -- opening ---------------------------------------------------------------------------


async def test_connect_timeouts(backend: Backend) -> None:
    def silent(peer: RawPeer) -> None:
        time.sleep(1)

    with RawServer(silent) as raw:
        with pytest.raises(TimeoutError):
            async with backend.connect(raw.url, connect_timeout=0.1):
                pass
        with pytest.raises(HandshakeError, match="timed out"):
            async with backend.connect(raw.url, connect_timeout=None, config=Config(handshake_timeout=0.1)):
                pass


async def test_a_server_that_hangs_up_during_the_handshake(backend: Backend) -> None:
    def hang_up(peer: RawPeer) -> None:
        peer.read_head()

    with RawServer(hang_up) as raw:
        with pytest.raises(HandshakeError) as failed:
            async with backend.connect(raw.url):
                pass
        assert type(failed.value) is HandshakeError
        assert not isinstance(failed.value, HandshakeRejected)


async def test_a_refused_connection_raises_oserror(backend: Backend) -> None:
    with RawServer(lambda peer: None) as raw:
        url = raw.url
    with pytest.raises(OSError):  # nothing listens there any more
        async with backend.connect(url):
            pass


async def test_a_bad_url_is_refused_before_connecting(backend: Backend) -> None:
    with pytest.raises(LocalProtocolError):
        async with backend.connect("http://127.0.0.1:1/"):
            pass
    with pytest.raises(LocalProtocolError, match="wss://"):
        async with backend.connect("ws://127.0.0.1:1/", ssl_context=ssl.create_default_context()):
            pass


async def test_on_upgrade_can_reject_with_status_body_and_headers(backend: Backend) -> None:
    def on_upgrade(request: UpgradeRequested, address: Any) -> Reject | None:
        if request.path == "/private":
            return Reject(status_code=403, body=b"nope", headers=(("x-why", "private"),))
        return None

    async with backend.serve(basic_on_session, on_upgrade=on_upgrade) as server:
        with pytest.raises(HandshakeRejected) as caught:
            async with backend.connect(server.url + "private"):
                pass
        assert caught.value.status_code == 403
        assert caught.value.body == b"nope"
        assert (b"x-why", b"private") in caught.value.headers
        async with backend.connect(server.url + "public") as session:
            assert await session.request(add, AddArgs(1, 1)) == 2


async def test_an_async_on_upgrade_and_failing_ones(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow_yes(request: UpgradeRequested, address: Any) -> Accept:
        await backend.sleep(0.01)
        return Accept()

    async with (
        backend.serve(basic_on_session, on_upgrade=slow_yes) as server,
        backend.connect(server.url) as session,
    ):
        assert await session.request(add, AddArgs(1, 1)) == 2

    def broken(request: UpgradeRequested, address: Any) -> Any:
        if request.path == "/wrong-type":
            return "yes"  # neither Accept, Reject nor None
        raise RuntimeError("hook broke")

    async with backend.serve(basic_on_session, on_upgrade=broken) as server:
        for path in ("", "wrong-type"):
            with pytest.raises(HandshakeRejected) as caught:
                async with backend.connect(server.url + path):
                    pass
            assert caught.value.status_code == 500
    assert any(r.exc_info and "hook broke" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_plain_http_get_gets_200_ok(backend: Backend) -> None:
    def get(port: int) -> bytes:
        peer = RawPeer.connect(port)
        try:
            peer.sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while data := peer.sock.recv(65536):
                answer += data
            return answer
        finally:
            peer.close()

    async with backend.serve(basic_on_session) as server:
        answer = await backend.to_thread(lambda: get(server.port))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nOK")


async def test_a_broken_connection_does_not_take_the_server_down(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def send_garbage(port: int, garbage: bytes) -> None:
        peer = RawPeer.connect(port)
        try:
            peer.sock.sendall(garbage)
            while peer.sock.recv(65536):
                pass
        finally:
            peer.close()

    async with backend.serve(basic_on_session) as server:
        for garbage in (b"\x00\x01\x02garbage\r\n\r\n", b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"):
            await backend.to_thread(functools.partial(send_garbage, server.port, garbage))
        async with backend.connect(server.url) as session:
            assert await session.request(add, AddArgs(2, 2)) == 4
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
