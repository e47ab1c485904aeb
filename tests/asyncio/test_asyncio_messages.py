"""Every message kind, both ways, over real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, assert_type

import pytest

import session_asyncio
from session_core import (
    Config,
    InternalError,
    InvalidRequestData,
    InvalidResponse,
    Method,
    MethodError,
    MethodNotFound,
    ProtocolErrorResponse,
    RemoteError,
)

from .support import AddArgs, add, crash, echo, fail, running, serve_basics, sleep, tick, url_of, welcome


async def test_requests_and_typed_answers() -> None:
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        result = await session.request(add, AddArgs(2, 3))
        assert_type(result, int)
        assert result == 5
        assert await session.request(echo, {"x": [1, 2, 3]}) == {"x": [1, 2, 3]}
        assert await session.request(echo, None) is None
        with pytest.raises(RemoteError) as failed:
            await session.request(fail, None)
        assert type(failed.value) is RemoteError
        assert failed.value.error == "boom"
        with pytest.raises(RemoteError) as negative:
            await session.request(add, AddArgs(-1, 3))
        assert negative.value.error == "negative"
        assert negative.value.method == "add"


async def test_protocol_errors_come_back_typed() -> None:
    unknown = Method("nope", request=None, response=None, error=None)
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        with pytest.raises(MethodNotFound) as not_found:
            await session.request(unknown, None)
        assert not_found.value.code == -32601
        with pytest.raises(InvalidRequestData) as invalid:
            await session.request("add", {"a": 1})  # untyped: "b" is missing
        assert invalid.value.code == -32602
        # The session goes on.
        assert await session.request("add", {"a": 1, "b": 2}) == 3


async def test_an_untyped_session_answers_method_not_found() -> None:
    async def on_session(session: session_asyncio.Session) -> None:
        pass  # registers nothing: every request is unknown

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        with pytest.raises(MethodNotFound) as not_found:
            await session.request("anything", [1])
        assert "anything" in not_found.value.message


async def test_a_handler_exception_answers_internal_error_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        with caplog.at_level(logging.ERROR), pytest.raises(InternalError) as failed:
            await session.request(crash, None)
        assert failed.value.code == -32603
        assert "secret detail" not in failed.value.message
        assert any(
            record.exc_info and "secret detail" in str(record.exc_info[1]) for record in caplog.records
        )
        assert await session.request(add, AddArgs(1, 1)) == 2  # the session goes on


async def test_a_response_that_does_not_fit_raises_invalid_response() -> None:
    wrong: Method[Any, int, str] = Method("echo", request=Any, response=int, error=str)
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        with pytest.raises(InvalidResponse):
            await session.request(wrong, "not an int")
        assert await session.request(wrong, 7) == 7


async def test_notifications_both_ways_and_server_calls_client() -> None:
    server_got: asyncio.Queue[int] = asyncio.Queue()
    server_results: asyncio.Queue[Any] = asyncio.Queue()

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            await server_got.put(n)

        await session.notify(welcome, "hi")
        # The server calls the client: a success, an error value and a protocol error.
        await server_results.put(await session.request(add, AddArgs(40, 2)))
        try:
            await session.request(fail, None)
        except RemoteError as exc:
            await server_results.put(("error", exc.error))
        try:
            await session.request(echo, 1)
        except ProtocolErrorResponse as exc:
            await server_results.put(("protocol", exc.code))

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        welcomed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            welcomed.set_result(text)

        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            return args.a + args.b

        @session.on_request(fail)
        async def _fail(_: None) -> None:
            raise MethodError("client boom")

        assert await welcomed == "hi"
        assert await server_results.get() == 42
        assert await server_results.get() == ("error", "client boom")
        assert await server_results.get() == ("protocol", -32601)
        for n in range(3):
            await session.notify(tick, n)
        assert [await server_got.get() for _ in range(3)] == [0, 1, 2]


async def test_handlers_registered_by_plain_calls() -> None:
    async def on_session(session: session_asyncio.Session) -> None:
        async def double(n: int) -> int:
            return 2 * n

        session.on_request(Method("double", request=int, response=int, error=str), double)

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        assert await session.request(Method("double", request=int, response=int, error=str), 21) == 42


async def test_notification_handler_errors_are_logged_and_unknown_ones_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: asyncio.Queue[int] = asyncio.Queue()

    async def on_session(session: session_asyncio.Session) -> None:
        serve_basics(session)

        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            if n == 0:
                raise RuntimeError("tick failed")
            await got.put(n)

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        with caplog.at_level(logging.DEBUG, logger="session_asyncio"):
            await session.notify(tick, 0)
            await session.notify("unknown", {"x": 1})
            await session.notify(tick, 1)
            assert await got.get() == 1
            assert await session.request(add, AddArgs(1, 2)) == 3
        messages = [record.getMessage() for record in caplog.records]
        assert any("tick" in m and "failed" in m for m in messages)
        assert any("'unknown' has no handler" in m for m in messages)


async def test_a_thousand_concurrent_requests() -> None:
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        results = await asyncio.gather(*(session.request(add, AddArgs(i, 1)) for i in range(1000)))
        assert results == [i + 1 for i in range(1000)]


async def test_handlers_run_concurrently() -> None:
    # A slow request does not hold up a fast one behind it.
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        slow = asyncio.create_task(session.request(sleep, 0.2))
        await asyncio.sleep(0)
        assert await session.request(add, AddArgs(1, 2)) == 3
        assert not slow.done()
        assert await slow == 0.2


async def test_ping_measures_the_round_trip() -> None:
    async with running() as server, session_asyncio.connect(url_of(server)) as session:
        rtts = await asyncio.gather(*(session.ping() for _ in range(3)))
        assert all(0 < rtt < 1 for rtt in rtts)


async def test_keepalive_keeps_a_live_session_open() -> None:
    config = Config(keepalive_interval=0.03, keepalive_timeout=0.2)
    async with (
        running(config=config) as server,
        session_asyncio.connect(url_of(server), config=config) as session,
    ):
        await asyncio.sleep(0.3)  # ten keepalive rounds each way
        assert not session.closed
        assert await session.request(add, AddArgs(1, 2)) == 3


async def test_session_properties() -> None:
    seen: asyncio.Future[session_asyncio.Session] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        seen.set_result(session)

    async with (
        running(on_session) as server,
        session_asyncio.connect(url_of(server, path="/room?x=1"), headers=[("x-token", "abc")]) as session,
    ):
        peer = await seen
        assert peer.path == session.path == "/room?x=1"
        assert (b"x-token", b"abc") in peer.request_headers
        assert session.request_headers == ((b"x-token", b"abc"),)
        assert session.subprotocol is None
        assert session.remote_address == server.sockets[0].getsockname()
        assert peer.remote_address[0] == "127.0.0.1"
        assert not session.closed and session.close_code is None and session.close_reason is None
        assert "client" in repr(session)


async def test_notifications_reach_their_handlers_one_at_a_time_in_arrival_order() -> None:
    # Many notifications of two methods arrive in few reads; handlers that yield (and so
    # could interleave) still see them in the order they were sent, one at a time.
    seen: list[tuple[str, int]] = []
    running_now = most = 0
    done = asyncio.Event()
    count = 300

    async def on_session(session: session_asyncio.Session) -> None:
        async def record(name: str, n: int) -> None:
            nonlocal running_now, most
            running_now += 1
            most = max(most, running_now)
            await asyncio.sleep(0.001 if n % 7 == 0 else 0)
            seen.append((name, n))
            running_now -= 1
            if len(seen) == count:
                done.set()

        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            await record("tick", n)

        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            await record("welcome", int(text))

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        sent = []
        for n in range(count):
            if n % 3:
                await session.notify(tick, n)
                sent.append(("tick", n))
            else:
                await session.notify(welcome, str(n))
                sent.append(("welcome", n))
        await asyncio.wait_for(done.wait(), 5)
    assert seen == sent
    assert most == 1
