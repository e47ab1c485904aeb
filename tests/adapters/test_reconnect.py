"""Reconnecting clients (`reconnecting`, `keep_connected`), on both adapters and every loop.

Real sockets and real time, kept short by a fast `Backoff`; the schedule itself is tested
with virtual time in tests/core/test_backoff.py and tests/trio/test_trio_reconnect.py.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

import session_asyncio
import session_trio
from session_core import (
    Backoff,
    HandshakeRejected,
    LocalProtocolError,
    Reject,
    SessionClosed,
    UpgradeRequested,
)
from session_core.driver import Reconnecting
from tests import wire
from tests.methods import AddArgs, AnySession, add, hang, serve_basics, tick, welcome

from .backend import Backend, EventLike
from .peers import RawPeer, RawServer, accept_upgrade

#: Quick retries, for tests in real time.
FAST = Backoff(initial=0.02, max_delay=0.1, jitter=0.5)


def reconnecting(backend: Backend, url: str, **options: Any) -> Reconnecting[AnySession]:
    """The adapter's `reconnecting(url, **options)`."""
    adapter = importlib.import_module(backend.adapter)
    return adapter.reconnecting(url, backoff=options.pop("backoff", FAST), **options)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def serve_on(
    backend: Backend, on_session: Callable[[AnySession], Awaitable[None]], port: int = 0
) -> AsyncIterator[int]:
    """Serve on 127.0.0.1:`port` with the backend's adapter; yields the port. Leaving
    shuts the server down (its sessions get 1001)."""
    if backend.adapter == "session_trio":
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(session_trio.serve, on_session, "127.0.0.1", port)
            )
            yield listeners[0].socket.getsockname()[1]
            nursery.cancel_scope.cancel()
    else:
        async with await session_asyncio.serve(on_session, "127.0.0.1", port) as server:
            yield server.sockets[0].getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where nothing listens (bound, so that nobody else takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- reconnecting ----------------------------------------------------------------------


async def test_a_server_restarted_on_the_same_port_is_reconnected_to(backend: Backend) -> None:
    served = 0

    async def on_session(session: AnySession) -> None:
        nonlocal served
        served += 1
        serve_basics(session)
        await session.notify(welcome, f"session {served}")

    ports: list[int] = []
    listening, stop_first, done = backend.event(), backend.event(), backend.event()
    welcomed: list[str] = []
    close_codes: list[int | None] = []

    async def server() -> None:
        async with serve_on(backend, on_session) as port:
            ports.append(port)
            listening.set()
            await stop_first.wait()
        # Down for a while (the client's attempts are refused), then back on the same port.
        await backend.sleep(0.3)
        async with serve_on(backend, on_session, ports[0]):
            await done.wait()

    async def client() -> int:
        try:
            await listening.wait()
            async with reconnecting(backend, f"ws://127.0.0.1:{ports[0]}/") as sessions:
                async for session in sessions:
                    got = backend.event()

                    @session.on_notification(welcome)  # again on each new session
                    async def _(text: str, got: EventLike = got) -> None:
                        welcomed.append(text)
                        got.set()

                    await got.wait()
                    assert await session.request(add, AddArgs(2, 3)) == 5
                    if sessions.opened == 2:
                        break
                    stop_first.set()
                    await session.wait_closed()
                    close_codes.append(session.close_code)
            return sessions.opened
        finally:
            done.set()

    assert await backend.gather(server, client) == [None, 2]
    assert welcomed == ["session 1", "session 2"]
    assert close_codes == [1001]


async def test_a_lost_connection_is_reconnected_to(backend: Backend) -> None:
    connections = 0

    def behaviour(peer: RawPeer) -> None:
        nonlocal connections
        connections += 1
        accept_upgrade(peer)
        if connections == 1:
            peer.reset()  # gone without a close frame: 1006
            return
        peer.sock.sendall(wire.text_frame('{"type":"notification","method":"tick","data":7}'))
        peer.frames_until_close(answer_close=True)

    ticks: list[int] = []
    with RawServer(behaviour) as raw:
        async with reconnecting(backend, raw.url) as sessions:
            async for session in sessions:
                got = backend.event()

                @session.on_notification(tick)
                async def _(n: int, got: EventLike = got) -> None:
                    ticks.append(n)
                    got.set()

                if sessions.opened == 1:
                    await session.wait_closed()
                    assert session.close_code == 1006
                    continue
                await got.wait()
                break
    assert not raw.errors
    assert ticks == [7]
    assert session.close_code == 1000  # `break` closes normally


async def test_requests_in_flight_fail_with_session_closed_and_are_not_sent_again(backend: Backend) -> None:
    hung: list[int] = []

    async def on_session(session: AnySession) -> None:
        serve_basics(session)
        asked = backend.event()

        @session.on_request(hang)
        async def _(_: None) -> None:
            hung.append(len(hung) + 1)
            asked.set()
            await backend.sleep(60)

        if not hung:
            await asked.wait()
            await session.close(1012, "restarting")  # service restart: retried

    async with (
        serve_on(backend, on_session) as port,
        reconnecting(backend, f"ws://127.0.0.1:{port}/") as sessions,
    ):
        async for session in sessions:
            if sessions.opened == 1:
                with pytest.raises(SessionClosed) as caught:
                    await session.request(hang, None, timeout=10)
                assert (caught.value.code, caught.value.reason) == (1012, "restarting")
                continue
            assert await session.request(add, AddArgs(1, 2)) == 3
            break
    assert hung == [1]  # asked once: nothing was sent again on the new session
    assert isinstance(sessions.last_failure, SessionClosed)


async def test_an_upgrade_refused_with_4xx_ends_the_iteration(backend: Backend) -> None:
    asked: list[str] = []

    def on_upgrade(request: UpgradeRequested, _: Any) -> Reject:
        asked.append(request.path)
        return Reject(status_code=403, body=b"no entry")

    async with backend.serve(serve_basics_async, on_upgrade=on_upgrade) as server:
        with pytest.raises(HandshakeRejected) as caught:
            async with reconnecting(backend, server.url) as sessions:
                async for _ in sessions:
                    raise AssertionError("no session")
    assert caught.value.status_code == 403
    assert asked == ["/"]  # not retried


async def test_an_upgrade_refused_with_5xx_is_retried(backend: Backend) -> None:
    asked: list[str] = []

    def on_upgrade(request: UpgradeRequested, _: Any) -> Reject | None:
        asked.append(request.path)
        return Reject(status_code=503, body=b"busy") if len(asked) < 3 else None

    async with (
        backend.serve(serve_basics_async, on_upgrade=on_upgrade) as server,
        reconnecting(backend, server.url) as sessions,
    ):
        async for session in sessions:
            assert await session.request(add, AddArgs(1, 1)) == 2
            break
    assert len(asked) == 3
    assert isinstance(sessions.last_failure, HandshakeRejected)
    assert sessions.last_failure.status_code == 503


async def test_a_policy_violation_ends_the_iteration(backend: Backend) -> None:
    async def on_session(session: AnySession) -> None:
        await session.close(1008, "banned")

    async with backend.serve(on_session) as server:
        with pytest.raises(SessionClosed) as caught:
            async with reconnecting(backend, server.url) as sessions:
                async for session in sessions:
                    await session.wait_closed()
    assert (caught.value.code, caught.value.reason) == (1008, "banned")
    assert sessions.opened == 1


async def test_refused_connections_are_retried_up_to_max_retries(backend: Backend, closed_port: int) -> None:
    sessions = reconnecting(
        backend, f"ws://127.0.0.1:{closed_port}/", backoff=Backoff(initial=0.01, max_retries=2)
    )
    with pytest.raises(OSError):  # trio: "all attempts to connect ... failed"
        async with sessions:
            async for _ in sessions:
                raise AssertionError("no session")
    assert sessions.opened == 0


async def test_a_bad_url_is_not_retried(backend: Backend) -> None:
    with pytest.raises(LocalProtocolError):
        async with reconnecting(backend, "http://127.0.0.1:1/") as sessions:
            async for _ in sessions:
                raise AssertionError("no session")


async def test_iterating_outside_async_with_is_refused(backend: Backend) -> None:
    sessions = reconnecting(backend, "ws://127.0.0.1:1/")
    with pytest.raises(LocalProtocolError, match="async with"):
        async for _ in sessions:
            raise AssertionError("no session")


# -- leaving -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["break", "exception", "cancellation"])
async def test_leaving_the_loop_closes_the_session(backend: Backend, how: str) -> None:
    ended = backend.event()
    codes: list[int | None] = []

    async def on_session(session: AnySession) -> None:
        await session.wait_closed()
        codes.append(session.close_code)
        ended.set()

    class Leave(Exception):
        pass

    async def run() -> None:
        async with reconnecting(backend, server.url) as sessions:
            async for _ in sessions:
                if how == "break":
                    break
                if how == "exception":
                    raise Leave
                await backend.sleep(60)

    async with backend.serve(on_session) as server:
        if how == "cancellation":
            assert await backend.cancel_after(0.2, run)
        elif how == "exception":
            with pytest.raises(Leave):
                await run()
        else:
            await run()
        await backend.within(5, ended.wait)
    assert codes == [1000 if how == "break" else 1001]


async def test_keep_connected_calls_on_session_for_each_session(backend: Backend) -> None:
    async def on_server_session(session: AnySession) -> None:
        await session.close(1013, "try again later")

    seen: list[int] = []

    class Enough(Exception):
        pass

    async def on_session(session: AnySession) -> None:
        seen.append(len(seen) + 1)
        if len(seen) == 3:
            raise Enough

    adapter = importlib.import_module(backend.adapter)
    async with backend.serve(on_server_session) as server:
        with pytest.raises(Enough):
            await adapter.keep_connected(on_session, server.url, backoff=FAST)
    assert seen == [1, 2, 3]


async def serve_basics_async(session: AnySession) -> None:
    """An `on_session` serving the basic methods."""
    serve_basics(session)
