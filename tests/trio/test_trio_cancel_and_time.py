"""Cancellation both ways, timeouts, keepalive and the close timeout.

The timing tests run on an autojumping `MockClock`: the core's timers are trio deadlines,
so virtual minutes pass in milliseconds.
"""

from __future__ import annotations

import pytest
import trio

import session_trio
from session_core import Config, Method, SessionClosed

from .support import AddArgs, RawPeer, add, raw_server, running_server, sleep

hang = Method("hang", request=None, response=None, error=None)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


class HangingHandler:
    """A `hang` handler that records when it starts and when it is cancelled."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()

    async def __call__(self, _: None) -> None:
        self.started.set()
        try:
            await trio.sleep_forever()
        finally:
            self.cancelled.set()


async def _add(args: AddArgs) -> int:
    return args.a + args.b


@pytest.mark.autojump
async def test_a_timeout_raises_the_builtin_timeout_error_and_cancels_the_handler() -> None:
    handler = HangingHandler()

    async def on_session(session: session_trio.Session) -> None:
        session.on_request(hang, handler)

    async with running_server(on_session) as url, session_trio.connect(url) as session:
        start = trio.current_time()
        with pytest.raises(TimeoutError) as caught:
            await session.request(hang, None, timeout=30)
        assert not isinstance(caught.value, trio.TooSlowError)
        assert trio.current_time() - start == pytest.approx(30)
        await handler.cancelled.wait()  # the peer got `$/cancel`


@pytest.mark.autojump
async def test_config_request_timeout_is_the_default() -> None:
    config = Config(request_timeout=7.0, keepalive_interval=None)
    async with running_server() as url, session_trio.connect(url, config=config) as session:
        assert await session.request(sleep, 5.0) == 5.0
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            await session.request(sleep, 100.0)
        assert trio.current_time() - start == pytest.approx(7)
        assert await session.request(sleep, 1.0, timeout=50) == 1.0  # a timeout of its own


@pytest.mark.autojump
async def test_a_peer_that_stops_answering_pings_is_closed() -> None:
    ended: list[tuple[int | None, float]] = []
    done = trio.Event()
    config = Config(keepalive_interval=10, keepalive_timeout=5)

    async def on_session(session: session_trio.Session) -> None:
        await session.wait_closed()
        ended.append((session.close_code, trio.current_time()))
        done.set()

    async with running_server(on_session, config=config) as url:
        start = trio.current_time()
        peer = await RawPeer.connect(_port(url))  # handshakes, then never reads again
        await done.wait()
        await peer.stream.aclose()
    [(code, at)] = ended
    assert code == 1011
    assert at - start == pytest.approx(15, abs=0.5)


@pytest.mark.autojump
async def test_keepalive_keeps_a_live_session_open() -> None:
    config = Config(keepalive_interval=5, keepalive_timeout=2)
    async with (
        running_server(config=config) as url,
        session_trio.connect(url, config=config) as session,
    ):
        await trio.sleep(120)  # 24 keepalive rounds each way, all answered
        assert not session.closed
        assert await session.request(add, AddArgs(1, 1)) == 2


@pytest.mark.autojump
async def test_close_gives_up_waiting_after_close_timeout() -> None:
    config = Config(close_timeout=3, keepalive_interval=None)

    async def silent(stream: trio.SocketStream) -> None:
        await RawPeer.accept(stream)
        await trio.sleep_forever()  # never reads our close frame, never answers it

    async with (
        raw_server(silent) as port,
        session_trio.connect(f"ws://127.0.0.1:{port}/", config=config) as session,
    ):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.close)
            await trio.sleep(1)
            # Closing is not closed: the code comes once the session has ended.
            assert (session.closed, session.close_code, session.close_reason) == (False, None, None)
        assert trio.current_time() - start == pytest.approx(3)
        assert session.closed
        assert session.close_code == 1000


@pytest.mark.autojump
async def test_ping_fails_when_the_session_ends_before_the_pong() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        peer = await RawPeer.accept(stream)
        await trio.sleep(1)
        await peer.stream.aclose()  # vanishes without answering the ping

    async with raw_server(silent) as port, session_trio.connect(f"ws://127.0.0.1:{port}/") as session:
        with pytest.raises(SessionClosed) as caught:
            await session.ping()
        assert caught.value.code == 1006


async def test_wait_closed_returns_once_the_handlers_are_done() -> None:
    started = trio.Event()
    tidied: list[bool] = []
    ended: list[list[bool]] = []
    done = trio.Event()

    async def slow_to_stop(_: None) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(0.05)  # tidying up takes a while
            tidied.append(True)

    async def on_session(session: session_trio.Session) -> None:
        session.on_request(hang, slow_to_stop)
        await session.wait_closed()
        ended.append(list(tidied))
        done.set()

    async with running_server(on_session) as url:
        async with session_trio.connect(url) as session, trio.open_nursery() as nursery:
            nursery.start_soon(_closed_by_the_end, session)
            await started.wait()
            await session.close()
        await done.wait()
    assert ended == [[True]]


async def _closed_by_the_end(session: session_trio.Session) -> None:
    with pytest.raises(SessionClosed):
        await session.request(hang, None)
