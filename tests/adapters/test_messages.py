"""Every message kind, both ways, typed answers and errors, on both adapters and every loop."""

from __future__ import annotations

import logging
from typing import Any, assert_type

import pytest

import session_asyncio
import session_trio
from session_core import (
    Accept,
    Config,
    InternalError,
    InvalidRequestData,
    InvalidResponse,
    Method,
    MethodError,
    MethodNotFound,
    ProtocolErrorResponse,
    RemoteError,
    UpgradeRequested,
)
from tests import wire
from tests.methods import (
    AddArgs,
    AnySession,
    Problem,
    add,
    basic_on_session,
    crash,
    echo,
    fail,
    picky,
    serve_basics,
    sleep,
    tick,
    welcome,
)

from .backend import Backend
from .peers import RawPeer, RawServer


async def test_every_message_kind_both_ways(backend: Backend) -> None:
    server_saw: dict[str, Any] = {}
    ticks: list[int] = []
    ticked = backend.event()
    server_done = backend.event()

    async def on_session(session: AnySession) -> None:
        serve_basics(session)

        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            ticks.append(n)
            if len(ticks) == 3:
                ticked.set()

        await session.notify(welcome, "hi")
        await ticked.wait()
        # The server calls the client: a response, an error response, a protocol error.
        server_saw["add"] = await session.request(add, AddArgs(20, 22))
        with pytest.raises(RemoteError) as caught:
            await session.request(fail, None)
        server_saw["fail"] = caught.value.error
        assert not isinstance(caught.value, ProtocolErrorResponse)
        with pytest.raises(ProtocolErrorResponse) as unknown:
            await session.request(echo, 1)  # the client serves no `echo`
        server_saw["echo"] = unknown.value.code
        server_done.set()

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        welcomed: list[str] = []

        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            welcomed.append(text)

        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            return args.a + args.b

        @session.on_request(fail)
        async def _fail(_: None) -> None:
            raise MethodError("client says no")

        assert await session.request(add, AddArgs(2, 3)) == 5
        assert await session.request(echo, {"x": [1, 2, 3]}) == {"x": [1, 2, 3]}
        assert await session.request(echo, None) is None
        with pytest.raises(RemoteError) as caught:
            await session.request(fail, None)
        assert type(caught.value) is RemoteError
        assert caught.value.error == "boom"
        assert caught.value.method == "fail"
        assert not isinstance(caught.value, ProtocolErrorResponse)
        with pytest.raises(RemoteError) as negative:
            await session.request(add, AddArgs(-1, 3))
        assert negative.value.error == "negative"
        assert negative.value.method == "add"
        assert not isinstance(negative.value, ProtocolErrorResponse)
        for n in range(3):
            await session.notify(tick, 7 + n)
        await server_done.wait()
        assert welcomed == ["hi"]
        assert ticks == [7, 8, 9]  # in order
        assert server_saw == {"add": 42, "fail": "client says no", "echo": -32601}


async def test_results_and_errors_are_typed(backend: Backend) -> None:
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:
        result = await session.request(picky, 4)
        assert result == AddArgs(4, 5)
        with pytest.raises(RemoteError) as caught:
            await session.request(picky, -1)
        assert caught.value.error == Problem(reason="negative", retry=False)
        total = await session.request(add, AddArgs(2, 3))
        assert isinstance(total, int)
        assert total == 5


async def _inferred_types_follow_the_method(
    trio_session: session_trio.Session, asyncio_session: session_asyncio.Session
) -> None:
    """Checked by mypy, never run: the result types follow the `Method`'s parameters."""
    assert_type(await trio_session.request(add, AddArgs(2, 3)), int)
    assert_type(await trio_session.request(picky, 4), AddArgs)
    assert_type(await asyncio_session.request(add, AddArgs(2, 3)), int)
    assert_type(await asyncio_session.request(picky, 4), AddArgs)


async def test_protocol_errors_come_back_typed(backend: Backend) -> None:
    unknown = Method("nope", request=None, response=None, error=None)
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:
        with pytest.raises(MethodNotFound) as not_found:
            await session.request(unknown, None)
        assert not_found.value.code == -32601
        assert "nope" in not_found.value.message
        with pytest.raises(MethodNotFound) as untyped_not_found:
            await session.request("nope", None)
        assert untyped_not_found.value.code == -32601
        with pytest.raises(InvalidRequestData) as missing:
            await session.request("add", {"a": 1})  # untyped: "b" is missing
        assert missing.value.code == -32602
        with pytest.raises(InvalidRequestData) as wrong:
            await session.request("add", {"a": "one", "b": 2})
        assert wrong.value.code == -32602
        # Untyped requests carry raw JSON; the session goes on.
        assert await session.request("add", {"a": 1, "b": 2}) == 3


async def test_a_session_without_handlers_answers_method_not_found(backend: Backend) -> None:
    outcome: list[BaseException] = []
    done = backend.event()

    async def on_session(session: AnySession) -> None:
        # Registers nothing: every request is unknown, both ways.
        try:
            await session.request(add, AddArgs(1, 1))
        except RemoteError as exc:
            outcome.append(exc)
        done.set()

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        with pytest.raises(MethodNotFound) as not_found:
            await session.request("anything", [1])
        assert "anything" in not_found.value.message
        await done.wait()
    assert isinstance(outcome[0], MethodNotFound)


async def test_a_handler_exception_answers_internal_error_and_is_logged(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:
        with pytest.raises(InternalError) as failed:
            await session.request(crash, None)
        assert failed.value.code == -32603
        assert "secret detail" not in failed.value.message  # not exposed by default
        assert await session.request(add, AddArgs(1, 2)) == 3  # the session goes on
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], ValueError)
    assert "secret detail" in str(failures[0].exc_info[1])


async def test_a_response_that_does_not_fit_raises_invalid_response(backend: Backend) -> None:
    wrong: Method[Any, int, str] = Method("echo", request=Any, response=int, error=str)
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:
        with pytest.raises(InvalidResponse):
            await session.request(wrong, "not an int")
        with pytest.raises(InvalidResponse):
            await session.request(wrong, {"a": 1})
        assert await session.request(wrong, 7) == 7


async def test_handlers_registered_by_plain_calls(backend: Backend) -> None:
    double = Method("double", request=int, response=int, error=str)

    async def on_session(session: AnySession) -> None:
        async def twice(n: int) -> int:
            return 2 * n

        session.on_request(double, twice)

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        assert await session.request(double, 21) == 42


async def test_failing_and_unknown_notifications_are_logged_and_the_session_goes_on(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=backend.adapter)
    calls: list[int] = []
    last = backend.event()

    async def on_session(session: AnySession) -> None:
        serve_basics(session)

        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            calls.append(n)
            if n == 2:
                last.set()
                return
            raise RuntimeError("tick handler broke")

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        await session.notify(tick, 0)
        await session.notify("nobody-listens", {"x": 1})
        await session.notify(tick, 1)
        await session.notify(tick, 2)
        await last.wait()
        assert await session.request(add, AddArgs(1, 2)) == 3
    assert calls == [0, 1, 2]  # in arrival order
    ours = [r for r in caplog.records if r.name == backend.adapter]
    failed = [r for r in ours if r.levelno == logging.ERROR]
    assert len(failed) == 2
    assert all("tick" in r.getMessage() and "failed" in r.getMessage() for r in failed)
    dropped = [r for r in ours if "nobody-listens" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.DEBUG]
    assert "'nobody-listens' has no handler" in dropped[0].getMessage()


async def test_a_thousand_concurrent_requests(backend: Backend) -> None:
    running = 0
    most = 0

    async def on_session(session: AnySession) -> None:
        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await backend.sleep(0)
            running -= 1
            return args.a + args.b

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        results = await backend.gather(
            *(lambda i=i: session.request(add, AddArgs(i, 1000)) for i in range(1000))
        )
    assert results == [i + 1000 for i in range(1000)]
    assert most > 1, "handlers should run concurrently"


async def test_a_slow_handler_does_not_hold_up_a_fast_one(backend: Backend) -> None:
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:
        slow_done = backend.event()

        async def slow() -> float:
            seconds: float = await session.request(sleep, 0.2)
            slow_done.set()
            return seconds

        async def fast() -> bool:
            await backend.sleep(0)
            assert await session.request(add, AddArgs(1, 2)) == 3
            return slow_done.is_set()

        assert await backend.gather(slow, fast) == [0.2, False]


async def test_ping_measures_the_round_trip(backend: Backend) -> None:
    async with backend.serve(basic_on_session) as server, backend.connect(server.url) as session:
        rtts = await backend.gather(*([session.ping] * 3))
        assert all(isinstance(rtt, float) and 0 < rtt < 1 for rtt in rtts)


async def test_keepalive_keeps_a_live_session_open(backend: Backend) -> None:
    config = Config(keepalive_interval=0.03, keepalive_timeout=0.2)
    async with (
        backend.serve(basic_on_session, config=config) as server,
        backend.connect(server.url, config=config) as session,
    ):
        await backend.sleep(0.3)  # ten keepalive rounds each way, all answered
        assert not session.closed
        assert await session.request(add, AddArgs(1, 2)) == 3


async def test_handshake_details_and_session_properties(backend: Backend) -> None:
    seen: dict[str, Any] = {}
    server_side: list[AnySession] = []

    def on_upgrade(request: UpgradeRequested, address: Any) -> Accept:
        seen["upgrade"] = request
        seen["address"] = address
        return Accept(subprotocol="v2", headers=(("x-served-by", "test"),))

    async def on_session(session: AnySession) -> None:
        server_side.append(session)
        serve_basics(session)

    async with (
        backend.serve(on_session, on_upgrade=on_upgrade) as server,
        backend.connect(
            server.url + "room?x=1", headers=[("x-token", "t0k")], subprotocols=["v1", "v2"]
        ) as session,
    ):
        assert await session.request(add, AddArgs(1, 1)) == 2
        [peer] = server_side
        assert session.subprotocol == peer.subprotocol == "v2"
        assert (b"x-served-by", b"test") in session.response_headers
        assert session.path == peer.path == "/room?x=1"
        assert (b"x-token", b"t0k") in peer.request_headers
        assert session.request_headers == ((b"x-token", b"t0k"),)
        assert session.remote_address[:2] == ("127.0.0.1", server.port)
        assert peer.remote_address[0] == "127.0.0.1"
        assert not session.closed and session.close_code is None and session.close_reason is None
        assert "client" in repr(session)
    assert seen["upgrade"].subprotocols == ("v1", "v2")
    assert seen["address"][0] == "127.0.0.1"


async def test_notifications_reach_their_handlers_one_at_a_time_in_arrival_order(backend: Backend) -> None:
    # Many notifications of two methods arrive in few reads; handlers that yield (and so
    # could interleave) still see them in the order they were sent, one at a time.
    seen: list[tuple[str, int]] = []
    running = most = 0
    done = backend.event()
    count = 300

    async def on_session(session: AnySession) -> None:
        async def record(name: str, n: int) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await backend.sleep(0.001 if n % 7 == 0 else 0)
            seen.append((name, n))
            running -= 1
            if len(seen) == count:
                done.set()

        @session.on_notification(tick)
        async def _tick(n: int) -> None:
            await record("tick", n)

        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            await record("welcome", int(text))

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        sent = []
        for n in range(count):
            if n % 3:
                await session.notify(tick, n)
                sent.append(("tick", n))
            else:
                await session.notify(welcome, str(n))
                sent.append(("welcome", n))
        await backend.within(5, done.wait)
    assert seen == sent
    assert most == 1


async def test_on_session_returning_leaves_the_session_open(backend: Backend) -> None:
    returned = backend.event()

    async def on_session(session: AnySession) -> None:
        serve_basics(session)
        returned.set()

    async with backend.serve(on_session) as server, backend.connect(server.url) as session:
        await returned.wait()
        await backend.sleep(0.05)
        assert not session.closed
        assert await session.request(add, AddArgs(2, 2)) == 4


async def test_messages_sent_with_the_101_reach_handlers_registered_after_connect(backend: Backend) -> None:
    # The 101, a notification and a request in one write: the notification must arrive
    # typed and the request must find its handler, though both are registered after
    # `connect` returned.
    point = Method("point", request=AddArgs, response=None, error=None)
    answers: list[tuple[int, bytes] | None] = []

    def eager(peer: RawPeer) -> None:
        request = peer.read_head()
        peer.sock.sendall(
            wire.accept_response(request)
            + wire.text_frame('{"type":"notification","method":"point","data":{"a":1,"b":2}}')
            + wire.text_frame('{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}')
        )
        answers.append(peer.recv_frame())

    with RawServer(eager) as raw:
        async with backend.connect(raw.url) as session:
            got: list[AddArgs] = []
            arrived = backend.event()

            @session.on_notification(point)
            async def _point(args: AddArgs) -> None:
                got.append(args)
                arrived.set()

            @session.on_request(add)
            async def _add(args: AddArgs) -> int:
                return args.a + args.b

            await arrived.wait()
            assert got == [AddArgs(1, 2)]
            assert await backend.eventually(lambda: bool(answers))
    assert answers == [(wire.TEXT, b'{"type":"response","id":1,"result":5}')]
    assert not raw.errors


async def test_a_request_sent_with_the_upgrade_reaches_on_session_s_handler(backend: Backend) -> None:
    # An eager client sends its first request in the same write as the upgrade request:
    # on_session registers `add` before its first await, and the request reaches it.
    request = wire.client_frame(wire.TEXT, b'{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}')

    def eager_client(port: int) -> tuple[bytes, tuple[int, bytes] | None]:
        peer = RawPeer.connect(port)
        try:
            peer.sock.sendall(wire.upgrade_request(f"127.0.0.1:{port}", key=wire.new_key()) + request)
            return peer.read_head(), peer.recv_frame()
        finally:
            peer.close()

    async with backend.serve(basic_on_session) as server:
        for _ in range(5):  # scheduling orders vary: try a few times
            head, answer = await backend.to_thread(lambda: eager_client(server.port))
            assert head.startswith(b"HTTP/1.1 101")
            assert answer == (wire.TEXT, b'{"type":"response","id":1,"result":5}')
