"""Failures inside handlers and user code, and what the peer may get wrong."""

from __future__ import annotations

import logging

import pytest
import trio

import session_trio
from session_core import (
    ConnectionClosed,
    InternalError,
    ProtocolErrorResponse,
    RemoteError,
    ResponseReceived,
)
from tests.helpers import TEXT, client_frame

from .support import AddArgs, RawPeer, add, crash, fail, running_server, serve_basics, tick


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


async def test_a_failing_handler_answers_internal_error_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server() as url, session_trio.connect(url) as session:
        with pytest.raises(InternalError) as caught:
            await session.request(crash, None)
        assert caught.value.code == -32603
        assert "secret detail" not in caught.value.message  # not exposed by default
        assert await session.request(add, AddArgs(1, 2)) == 3
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ValueError)


async def test_method_error_is_a_typed_error_response() -> None:
    async with running_server() as url, session_trio.connect(url) as session:
        with pytest.raises(RemoteError) as caught:
            await session.request(fail, None)
        assert type(caught.value) is RemoteError
        assert caught.value.error == "boom"
        assert caught.value.method == "fail"
        with pytest.raises(RemoteError) as negative:
            await session.request(add, AddArgs(-1, 1))
        assert negative.value.error == "negative"
        assert not isinstance(negative.value, ProtocolErrorResponse)


async def test_a_failing_notification_handler_is_logged_and_the_session_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    async def on_session(session: session_trio.Session) -> None:
        serve_basics(session)

        @session.on_notification(tick)
        async def _(n: int) -> None:
            calls.append(n)
            raise RuntimeError("tick handler broke")

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        await session.notify(tick, 1)
        await session.notify(tick, 2)
        assert await session.request(add, AddArgs(1, 1)) == 2
        while len(calls) < 2:
            await trio.sleep(0.01)
    assert calls == [1, 2]  # in arrival order
    logged = [r for r in caplog.records if r.name == "session_trio" and r.levelno == logging.ERROR]
    assert len(logged) == 2
    assert "tick" in logged[0].getMessage()


async def test_unknown_notifications_are_dropped_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="session_trio")
    async with running_server() as url, session_trio.connect(url) as session:
        await session.notify("nobody-listens", {"x": 1})
        assert await session.request(add, AddArgs(1, 1)) == 2
    dropped = [r for r in caplog.records if "nobody-listens" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.DEBUG]


async def test_invalid_messages_are_logged_without_payload_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server() as url:
        peer = await RawPeer.connect(_port(url))
        await peer.stream.send_all(
            client_frame(TEXT, b'{"type":"request","id":-1,"method":"add","data":"hunter2"}')
            + client_frame(TEXT, b"not json hunter2")
        )
        # A response to nothing the server asked for, then a valid request: still served.
        peer.conn.send_request(add, AddArgs(2, 2))
        await peer.stream.send_all(client_frame(TEXT, b'{"type":"response","id":99,"result":"hunter2"}'))
        await peer.flush()
        answer = await peer.expect(ResponseReceived)
        assert answer.result == 4
        await peer.stream.aclose()
    warnings = [r for r in caplog.records if r.name == "session_trio" and r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("hunter2" not in r.getMessage() for r in caplog.records)
    assert "99" in warnings[2].getMessage()


async def test_an_exception_in_the_connect_block_propagates_as_itself() -> None:
    ended: list[int | None] = []
    done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        await session.wait_closed()
        ended.append(session.close_code)
        done.set()

    async with running_server(on_session) as url:
        with pytest.raises(KeyError, match="mine"):  # not an exception group
            async with session_trio.connect(url):
                raise KeyError("mine")
        await done.wait()
    assert ended == [1001]


async def test_a_failing_on_session_closes_the_session_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def on_session(session: session_trio.Session) -> None:
        serve_basics(session)
        await trio.sleep(0)
        raise RuntimeError("on_session broke")

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        await session.wait_closed()
        assert session.close_code == 1011
    assert any("on_session" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


async def test_a_raw_client_sees_the_1011_close_frame() -> None:
    async def on_session(session: session_trio.Session) -> None:
        raise RuntimeError("immediately")

    async with running_server(on_session) as url:
        peer = await RawPeer.connect(_port(url))
        closed = await peer.expect(ConnectionClosed)
        assert closed.code == 1011
        await peer.stream.aclose()
