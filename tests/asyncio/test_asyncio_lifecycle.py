"""Closing, vanishing peers, server shutdown, timeouts, keepalive and cancellation."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

import pytest

import session_asyncio
from session_core import (
    Config,
    HandshakeError,
    Method,
    RequestCancelled,
    SessionClosed,
)

from .support import (
    UPGRADE,
    AddArgs,
    accept_upgrade,
    add,
    masked_frame,
    raw_server,
    read_frame,
    running,
    serve_basics,
    sleep,
    text_frame,
    tick,
    url_of,
    welcome,
)

Loop = asyncio.AbstractEventLoop


def future() -> asyncio.Future[session_asyncio.Session]:
    return asyncio.get_running_loop().create_future()


async def test_a_close_code_and_reason_reach_both_ends() -> None:
    server_side = future()

    async def on_session(session: session_asyncio.Session) -> None:
        server_side.set_result(session)

    async with running(on_session) as server:
        async with session_asyncio.connect(url_of(server)) as session:
            peer = await server_side
            await session.close(4000, "bye")
            assert session.closed
            assert (session.close_code, session.close_reason) == (4000, "bye")
            with pytest.raises(SessionClosed):
                await session.request(add, AddArgs(1, 2))
            with pytest.raises(SessionClosed):
                await session.notify("x", None)
        await peer.wait_closed()
        assert (peer.close_code, peer.close_reason) == (4000, "bye")


async def test_the_server_closing_a_session_fails_pending_requests_at_once() -> None:
    async def on_session(session: session_asyncio.Session) -> None:
        serve_basics(session)

        @session.on_request(Method("quit", request=None, response=None, error=None))
        async def _quit(_: None) -> None:
            await session.close(4001, "asked to quit")  # from inside a handler

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        pending = asyncio.create_task(session.request(sleep, 10.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(SessionClosed):
            await session.request("quit", None)
        with pytest.raises(SessionClosed) as closed:
            await pending
        assert time.monotonic() - started < 1
        assert closed.value.code == 4001
        await session.wait_closed()
        assert (session.close_code, session.close_reason) == (4001, "asked to quit")


async def test_our_close_fails_our_pending_requests_at_once() -> None:
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        pending = [asyncio.create_task(session.request(sleep, 10.0)) for _ in range(3)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await session.close()
        for task in pending:
            with pytest.raises(SessionClosed):
                await task
        assert time.monotonic() - started < 1


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_the_peer_vanishing_mid_request(how: str) -> None:
    async def vanish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        await reader.read(1)  # the request has begun to arrive
        if how == "rst":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with raw_server(vanish) as url, session_asyncio.connect(url) as session:
        started = time.monotonic()
        with pytest.raises(SessionClosed) as closed:
            await session.request(add, AddArgs(1, 2))
        assert time.monotonic() - started < 1
        assert closed.value.code == 1006
        await session.wait_closed()
        assert session.close_code == 1006


async def test_a_close_frame_without_code_reads_as_1005() -> None:
    # As session-rs closes.
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        writer.write(b"\x88\x00")
        await reader.read()  # the client answers and closes

    async with raw_server(close_at_once) as url, session_asyncio.connect(url) as session:
        await session.wait_closed()
        assert session.close_code == 1005


async def test_server_shutdown_closes_sessions_with_1001_and_leaves_no_task() -> None:
    handler_cancelled = asyncio.Event()
    on_session_cancelled = asyncio.Event()

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_request(sleep)
        async def _sleep(seconds: float) -> float:
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                handler_cancelled.set()
                raise
            return seconds

        try:
            await asyncio.sleep(100)  # on_session still running at shutdown
        except asyncio.CancelledError:
            on_session_cancelled.set()
            raise

    server = await session_asyncio.serve(on_session, "127.0.0.1", 0)
    async with session_asyncio.connect(url_of(server)) as session:
        pending = asyncio.create_task(session.request(sleep, 100.0))
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        assert handler_cancelled.is_set() and on_session_cancelled.is_set()
        assert not server.sessions and not server.is_serving() and server.sockets == ()
        with pytest.raises(SessionClosed) as closed:
            await pending
        assert closed.value.code == 1001
        await session.wait_closed()
        assert session.close_code == 1001
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_serve_forever_ends_with_close() -> None:
    async with running() as server:
        forever = asyncio.create_task(server.serve_forever())
        async with session_asyncio.connect(url_of(server)) as session:
            assert await session.request(add, AddArgs(1, 1)) == 2
            server.close()
            await forever
            await session.wait_closed()
            assert session.close_code == 1001


async def test_cancelling_serve_forever_shuts_down() -> None:
    server = await session_asyncio.serve(lambda s: asyncio.sleep(0), "127.0.0.1", 0)
    forever = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.01)
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever
    assert not server.is_serving()


async def test_on_session_failing_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def on_session(session: session_asyncio.Session) -> None:
        raise RuntimeError("on_session bug")

    with caplog.at_level(logging.ERROR, logger="session_asyncio"):
        async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
            await session.wait_closed()
            assert session.close_code == 1011
    assert any(r.exc_info and "on_session bug" in str(r.exc_info[1]) for r in caplog.records)


async def test_on_session_returning_leaves_the_session_open() -> None:
    returned = asyncio.Event()

    async def on_session(session: session_asyncio.Session) -> None:
        serve_basics(session)
        returned.set()

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        await returned.wait()
        await asyncio.sleep(0.05)
        assert not session.closed
        assert await session.request(add, AddArgs(2, 2)) == 4


async def test_request_timeouts_raise_timeout_error_and_cancel_the_handler() -> None:
    cancelled = asyncio.Event()

    async def on_session(session: session_asyncio.Session) -> None:
        serve_basics(session)

        @session.on_request(sleep)
        async def _sleep(seconds: float) -> float:
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return seconds

    async with (
        running(on_session) as server,
        session_asyncio.connect(url_of(server), config=Config(request_timeout=0.05)) as session,
    ):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await session.request(sleep, 5.0)  # the configured default
        assert 0.04 < time.monotonic() - started < 1
        await asyncio.wait_for(cancelled.wait(), 1)  # `$/cancel` reached the handler
        cancelled.clear()
        with pytest.raises(TimeoutError):
            await session.request(sleep, 5.0, timeout=0.02)  # an explicit one
        await asyncio.wait_for(cancelled.wait(), 1)
        assert await session.request(sleep, 0.01, timeout=1) == 0.01


async def test_cancelling_a_request_cancels_the_remote_handler_both_ways() -> None:
    server_cancelled = asyncio.Event()
    client_cancelled = asyncio.Event()
    server_started = asyncio.Event()
    results: asyncio.Queue[str] = asyncio.Queue()

    async def on_session(session: session_asyncio.Session) -> None:
        serve_basics(session)

        @session.on_request(sleep)
        async def _sleep(seconds: float) -> float:
            server_started.set()
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                server_cancelled.set()
                raise
            return seconds

        # The server gives up its own request to the client.
        call = asyncio.create_task(session.request(sleep, 100.0))
        await asyncio.sleep(0.05)
        call.cancel()
        try:
            await call
        except asyncio.CancelledError:
            await results.put("server cancelled its call")
        total = await session.request(add, AddArgs(1, 2))
        await results.put(f"then {total}")

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:

        @session.on_request(sleep)
        async def _client_sleep(seconds: float) -> float:
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                client_cancelled.set()
                raise
            return seconds

        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            return args.a + args.b

        assert await results.get() == "server cancelled its call"
        await asyncio.wait_for(client_cancelled.wait(), 1)
        assert await results.get() == "then 3"

        call = asyncio.create_task(session.request(sleep, 100.0))
        await server_started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(server_cancelled.wait(), 1)
        assert await session.request(add, AddArgs(1, 2)) == 3


async def test_a_handler_cancelled_locally_answers_request_cancelled() -> None:
    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_request(sleep)
        async def _sleep(seconds: float) -> float:
            async with asyncio.TaskGroup() as group:
                group.create_task(asyncio.sleep(seconds))
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
            return seconds

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        with pytest.raises(RequestCancelled) as cancelled:
            await session.request(sleep, 10.0)
        assert cancelled.value.code == -32800


async def test_keepalive_closes_a_peer_that_stops_answering() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        await asyncio.sleep(100)  # never reads, never answers a ping

    config = Config(keepalive_interval=0.05, keepalive_timeout=0.1)
    async with raw_server(deaf) as url, session_asyncio.connect(url, config=config) as session:
        started = time.monotonic()
        await asyncio.wait_for(session.wait_closed(), 2)
        assert 0.1 < time.monotonic() - started < 1
        assert session.close_code == 1011


async def test_close_gives_up_on_a_peer_that_never_answers() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(reader, writer)
        await asyncio.sleep(100)

    config = Config(close_timeout=0.2)
    async with raw_server(deaf) as url, session_asyncio.connect(url, config=config) as session:
        started = time.monotonic()
        closing = asyncio.create_task(session.close())
        await asyncio.sleep(0.05)
        # Closing is not closed: the code comes once the session has ended.
        assert (session.closed, session.close_code, session.close_reason) == (False, None, None)
        await closing
        assert time.monotonic() - started < 1
        assert session.close_code == 1000


async def test_the_server_drops_a_client_that_never_sends_its_upgrade() -> None:
    async with running(config=Config(handshake_timeout=0.1)) as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert time.monotonic() - started < 1
        writer.close()
        await writer.wait_closed()


async def test_connect_timeouts() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(100)

    async with raw_server(silent) as url:
        with pytest.raises(TimeoutError):
            async with session_asyncio.connect(url, connect_timeout=0.1):
                pass
        with pytest.raises(HandshakeError, match="timed out"):
            async with session_asyncio.connect(
                url, connect_timeout=None, config=Config(handshake_timeout=0.1)
            ):
                pass


async def test_a_peer_closing_during_the_handshake() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with raw_server(hang_up) as url:
        with pytest.raises(HandshakeError) as failed:
            async with session_asyncio.connect(url):
                pass
        assert type(failed.value) is HandshakeError


async def test_messages_sent_right_after_the_101_reach_the_handlers() -> None:
    # The 101 and two frames in one write: the notification must arrive typed and the
    # request must find its handler, though both are registered after connect() returned.
    got: asyncio.Future[AddArgs] = asyncio.get_running_loop().create_future()
    answers: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

    async def eager(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accept_upgrade(
            reader,
            writer,
            then=text_frame('{"type":"notification","method":"point","data":{"a":1,"b":2}}')
            + text_frame('{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}'),
        )
        answers.set_result(await read_frame(reader))

    point = Method("point", request=AddArgs, response=None, error=None)
    async with raw_server(eager) as url, session_asyncio.connect(url) as session:

        @session.on_notification(point)
        async def _point(args: AddArgs) -> None:
            got.set_result(args)

        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            return args.a + args.b

        assert await got == AddArgs(1, 2)
        assert await answers == (1, b'{"type":"response","id":1,"result":5}')


TEXT, CLOSE = 0x1, 0x8


def masked_text_frame(text: str) -> bytes:
    return masked_frame(TEXT, text.encode())


async def test_a_pipelined_request_reaches_the_handler_on_the_server() -> None:
    # A client that sends its first frame in the same write as the upgrade request.
    async with running() as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            UPGRADE + masked_text_frame('{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}')
        )
        await reader.readuntil(b"\r\n\r\n")
        assert await read_frame(reader) == (1, b'{"type":"response","id":1,"result":5}')
        writer.close()
        await writer.wait_closed()


async def _last_words(server: session_asyncio.Server, message: str) -> None:
    """Open a session by hand, then send `message` and a close frame (4000) in one write."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(UPGRADE)
    await reader.readuntil(b"\r\n\r\n")
    writer.write(masked_text_frame(message) + masked_frame(CLOSE, struct.pack("!H", 4000) + b"bye"))
    assert await read_frame(reader) == (CLOSE, struct.pack("!H", 4000) + b"bye")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_a_notification_in_the_same_read_as_the_close_reaches_its_handler() -> None:
    # As a peer that writes `send(note); close()`: the notification was received while the
    # session was open, so its handler gets it (and may still await) after the end.
    got: list[int] = []
    done = asyncio.Event()

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            await asyncio.sleep(0.01)
            got.append(n)

        await session.wait_closed()
        done.set()

    async with running(on_session) as server:
        await _last_words(server, '{"type":"notification","method":"tick","data":7}')
        await asyncio.wait_for(done.wait(), 2)
    assert got == [7]


async def test_notification_handlers_get_a_bounded_grace_after_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_asyncio._session, "TEARDOWN_GRACE", 0.2)
    cancelled: list[float] = []
    ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            try:
                await asyncio.sleep(100)
            finally:
                cancelled.append(time.monotonic())

        await session.wait_closed()
        ended.set_result(time.monotonic())

    async with running(on_session) as server:
        await _last_words(server, '{"type":"notification","method":"tick","data":1}')
        closed_at = time.monotonic()
        assert 0.1 < await asyncio.wait_for(ended, 2) - closed_at < 1
    assert 0.1 < cancelled[0] - closed_at < 1


async def test_a_request_in_the_same_read_as_the_close_lets_the_server_shut_down() -> None:
    # The request cannot be answered (no data frame may follow our close frame); its
    # handler task is cancelled before it ever ran, and the server must still forget the
    # session.
    async with running() as server:
        await _last_words(server, '{"type":"request","id":1,"method":"add","data":{"a":1,"b":2}}')
        async with asyncio.timeout(2):
            while server.sessions:
                await asyncio.sleep(0.01)
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2)


async def test_an_exception_in_the_connect_block_propagates_and_goes_away_with_1001() -> None:
    ended: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        await session.wait_closed()
        ended.set_result((session.close_code, session.close_reason))

    async with running(on_session) as server:
        started = time.monotonic()
        with pytest.raises(KeyError, match="mine"):
            async with session_asyncio.connect(url_of(server)) as session:
                raise KeyError("mine")
        assert time.monotonic() - started < 1  # without waiting for the close handshake
        assert await asyncio.wait_for(ended, 2) == (1001, "going away")
        await session.wait_closed()
        assert session.close_code == 1001


async def test_a_notification_handler_can_close_its_own_session_at_once() -> None:
    took: list[float] = []

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            start = time.monotonic()
            await session.close(4000, text)  # waits for the end, not for itself
            took.append(time.monotonic() - start)

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        start = time.monotonic()
        await session.notify(welcome, "bye")
        await asyncio.wait_for(session.wait_closed(), 2)
        assert session.close_code == 4000
        assert time.monotonic() - start < 0.5
    assert took and took[0] < 0.5
