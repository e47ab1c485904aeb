"""Closing, vanishing peers, server shutdown, timeouts, keepalive and cancellation."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

import session_asyncio
import session_core.driver
from session_core import (
    RequestCancelled,
    SessionClosed,
)

from .support import (
    UPGRADE,
    AddArgs,
    add,
    masked_frame,
    read_frame,
    running,
    sleep,
    tick,
    url_of,
)

Loop = asyncio.AbstractEventLoop


def future() -> asyncio.Future[session_asyncio.Session]:
    return asyncio.get_running_loop().create_future()


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


TEXT, CLOSE = 0x1, 0x8


def masked_text_frame(text: str) -> bytes:
    return masked_frame(TEXT, text.encode())


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


async def test_notification_handlers_get_a_bounded_grace_after_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_core.driver, "TEARDOWN_GRACE", 0.2)
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
