"""Every message kind, both ways, over real loopback sockets."""

from __future__ import annotations

from typing import Any, assert_type

import pytest
import trio

import session_trio
from session_core import (
    Accept,
    Connection,
    ConnectionClosed,
    InvalidRequestData,
    InvalidResponse,
    MethodError,
    MethodNotFound,
    ProtocolErrorResponse,
    RemoteError,
    RequestReceived,
    SessionClosed,
    UpgradeRequested,
)
from tests.helpers import TEXT, client_frame

from .support import (
    AddArgs,
    Problem,
    RawPeer,
    add,
    echo,
    fail,
    picky,
    raw_server,
    running_server,
    serve_basics,
    tick,
    welcome,
)


async def test_every_message_kind_both_ways() -> None:
    server_saw: dict[str, Any] = {}
    server_done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        serve_basics(session)
        ticked = trio.Event()

        @session.on_notification(tick)
        async def _(n: int) -> None:
            server_saw["tick"] = n
            ticked.set()

        await session.notify(welcome, "hi")
        await ticked.wait()
        # The server calls the client: a response and an error response.
        server_saw["add"] = await session.request(add, AddArgs(20, 22))
        with pytest.raises(RemoteError) as caught:
            await session.request(fail, None)
        server_saw["fail"] = caught.value.error
        server_done.set()

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        welcomed: list[str] = []

        @session.on_notification(welcome)
        async def _(text: str) -> None:
            welcomed.append(text)

        @session.on_request(add)
        async def _(args: AddArgs) -> int:
            return args.a + args.b

        @session.on_request(fail)
        async def _(_: None) -> None:
            raise MethodError("client says no")

        assert await session.request(add, AddArgs(2, 3)) == 5
        assert await session.request(echo, {"x": [1, 2, 3]}) == {"x": [1, 2, 3]}
        with pytest.raises(RemoteError) as caught:
            await session.request(fail, None)
        assert caught.value.error == "boom"
        assert not isinstance(caught.value, ProtocolErrorResponse)
        await session.notify(tick, 7)
        await server_done.wait()
        assert welcomed == ["hi"]
        assert server_saw == {"tick": 7, "add": 42, "fail": "client says no"}


async def test_results_and_errors_are_typed() -> None:
    async with running_server() as url, session_trio.connect(url) as session:
        result = await session.request(picky, 4)
        assert result == AddArgs(4, 5)
        with pytest.raises(RemoteError) as caught:
            await session.request(picky, -1)
        assert caught.value.error == Problem(reason="negative", retry=False)
        # The inferred types follow the Method's type parameters.
        total = await session.request(add, AddArgs(2, 3))
        assert_type(total, int)
        assert_type(result, AddArgs)
        assert isinstance(total, int)


async def test_untyped_requests_carry_raw_json() -> None:
    async with running_server() as url, session_trio.connect(url) as session:
        assert await session.request("add", {"a": 1, "b": 2}) == 3
        with pytest.raises(InvalidRequestData) as invalid:
            await session.request("add", {"a": "one", "b": 2})
        assert invalid.value.code == -32602
        with pytest.raises(MethodNotFound) as missing:
            await session.request("nope", None)
        assert missing.value.code == -32601
        assert "nope" in missing.value.message


async def test_a_session_without_handlers_answers_method_not_found() -> None:
    outcome: list[BaseException] = []
    done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        try:
            await session.request(add, AddArgs(1, 1))
        except RemoteError as exc:
            outcome.append(exc)
        done.set()

    async with running_server(on_session) as url, session_trio.connect(url):
        await done.wait()
    assert isinstance(outcome[0], MethodNotFound)


async def test_thousand_concurrent_requests_on_one_session() -> None:
    running = 0
    most = 0

    async def on_session(session: session_trio.Session) -> None:
        @session.on_request(add)
        async def _(args: AddArgs) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await trio.sleep(0)
            running -= 1
            return args.a + args.b

    results: dict[int, int] = {}
    async with running_server(on_session) as url, session_trio.connect(url) as session:

        async def one(i: int) -> None:
            results[i] = await session.request(add, AddArgs(i, 1000))

        async with trio.open_nursery() as nursery:
            for i in range(1000):
                nursery.start_soon(one, i)
    assert results == {i: i + 1000 for i in range(1000)}
    assert most > 1, "handlers should run concurrently"


async def test_a_notification_sent_with_the_101_waits_for_the_handler() -> None:
    # The server writes its 101 and a notification in one write: the client must still
    # deliver it to the handler registered right after `connect` returns.
    async def handler(stream: trio.SocketStream) -> None:
        peer = RawPeer(stream, Connection.server(now=trio.current_time()))
        await peer.expect(UpgradeRequested)
        peer.conn.accept(now=trio.current_time())
        peer.conn.send_notification(welcome, "hi")
        await peer.flush()
        await peer.expect(ConnectionClosed)  # answers the client's close frame

    async with raw_server(handler) as port, session_trio.connect(f"ws://127.0.0.1:{port}/") as session:
        got = trio.Event()
        seen: list[str] = []

        @session.on_notification(welcome)
        async def _(text: str) -> None:
            seen.append(text)
            got.set()

        await got.wait()
        assert seen == ["hi"]


async def test_a_request_sent_with_the_upgrade_waits_for_on_session() -> None:
    # An eager client sends its first request in the same write as the upgrade request:
    # on_session registers `add` before its first await, and the request reaches it.
    async with running_server() as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        frame = client_frame(TEXT, b'{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}')
        for _ in range(5):  # trio's scheduling order varies: try a few times
            upgrade = Connection.client(f"127.0.0.1:{port}", "/", now=trio.current_time()).data_to_send()
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(upgrade + frame)
            received = b""
            while b'"id":1,' not in received or not received.endswith(b"}"):
                received += await stream.receive_some(65536)
            assert received.startswith(b"HTTP/1.1 101")
            assert received.endswith(b'{"type":"response","id":1,"result":5}')
            await stream.aclose()


async def test_on_session_returning_leaves_the_session_open() -> None:
    returned = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        serve_basics(session)
        returned.set()

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        await returned.wait()
        await trio.sleep(0.05)
        assert not session.closed
        assert await session.request(add, AddArgs(1, 2)) == 3


async def test_handshake_details_ping_and_addresses() -> None:
    seen: dict[str, Any] = {}

    def on_upgrade(request: UpgradeRequested, address: Any) -> Accept:
        seen["upgrade"] = request
        seen["address"] = address
        return Accept(subprotocol="v2", headers=(("x-served-by", "test"),))

    async def on_session(session: session_trio.Session) -> None:
        seen["path"] = session.path
        seen["headers"] = session.request_headers
        seen["subprotocol"] = session.subprotocol
        serve_basics(session)

    async with (
        running_server(on_session, on_upgrade=on_upgrade) as url,
        session_trio.connect(
            url + "chat?room=1", headers=[("x-token", "t0k")], subprotocols=["v1", "v2"]
        ) as session,
    ):
        assert session.subprotocol == "v2"
        assert (b"x-served-by", b"test") in session.response_headers
        assert session.path == "/chat?room=1"
        assert session.remote_address[0] == "127.0.0.1"
        rtt = await session.ping()
        assert 0 <= rtt < 5
        assert await session.request(add, AddArgs(1, 1)) == 2
    assert seen["path"] == "/chat?room=1"
    assert (b"x-token", b"t0k") in seen["headers"]
    assert seen["subprotocol"] == "v2"
    assert seen["upgrade"].subprotocols == ("v1", "v2")
    assert seen["address"][0] == "127.0.0.1"


async def test_after_close_every_call_raises_session_closed() -> None:
    async with running_server() as url:
        async with session_trio.connect(url) as session:
            pass
        assert session.closed
        assert session.close_code == 1000
        with pytest.raises(SessionClosed):
            await session.request(add, AddArgs(1, 1))
        with pytest.raises(SessionClosed):
            await session.notify(tick, 1)
        with pytest.raises(SessionClosed):
            await session.ping()
        await session.close()  # closing again does nothing
        await session.wait_closed()


async def test_a_close_code_and_reason_reach_the_peer() -> None:
    ended: list[tuple[int | None, str | None]] = []
    done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        await session.wait_closed()
        ended.append((session.close_code, session.close_reason))
        done.set()

    async with running_server(on_session) as url:
        async with session_trio.connect(url) as session:
            await session.close(4000, "bye")
            assert session.close_code == 4000
        await done.wait()
    assert ended == [(4000, "bye")]


async def test_an_answer_that_does_not_fit_raises_invalid_response() -> None:
    # A raw server answers with a response whose result has the wrong type.
    async def handler(stream: trio.SocketStream) -> None:
        peer = await RawPeer.accept(stream)
        request = await peer.expect(RequestReceived)
        peer.conn.send_response(request.request_id, "not a number")
        await peer.flush()
        await peer.expect(ConnectionClosed)

    async with raw_server(handler) as port, session_trio.connect(f"ws://127.0.0.1:{port}/") as session:
        with pytest.raises(InvalidResponse):
            await session.request(add, AddArgs(1, 1))


async def test_notifications_reach_their_handlers_one_at_a_time_in_arrival_order() -> None:
    # Many notifications of two methods arrive in few reads; handlers that yield (and so
    # could interleave) still see them in the order they were sent, one at a time.
    seen: list[tuple[str, int]] = []
    running = 0
    most = 0
    done = trio.Event()
    count = 300

    async def on_session(session: session_trio.Session) -> None:
        async def record(name: str, n: int) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await trio.sleep(0)
            seen.append((name, n))
            running -= 1
            if len(seen) == count:
                done.set()

        @session.on_notification(tick)
        async def _(n: int) -> None:
            await record("tick", n)

        @session.on_notification(welcome)
        async def _(text: str) -> None:
            await record("welcome", int(text))

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        sent = []
        for n in range(count):
            if n % 3:
                await session.notify(tick, n)
                sent.append(("tick", n))
            else:
                await session.notify(welcome, str(n))
                sent.append(("welcome", n))
        await done.wait()
    assert seen == sent
    assert most == 1
