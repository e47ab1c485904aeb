"""Reconnecting, with no sockets and virtual time: the backoff schedule, what is retried,
and the reconnecting loop of the driver layer against a scripted connect and sleep."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from session_core import Backoff, HandshakeError, HandshakeRejected, LocalProtocolError, SessionClosed
from session_core.driver import RETRIED_CLOSE_CODES, Reconnecting, Reconnector, keep_connected, should_retry

T = TypeVar("T")

# -- the schedule ----------------------------------------------------------------------


def test_the_default_schedule_doubles_up_to_its_cap() -> None:
    backoff = Backoff()
    assert [backoff.delay(n, 0.0) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    # The jitter takes off up to half of each delay by default.
    assert backoff.delay(3, 0.5) == 6.0
    assert backoff.delay(3, 0.999) == pytest.approx(4.0, abs=0.01)


def test_a_very_long_outage_stays_at_the_cap() -> None:
    assert Backoff(max_delay=60).delay(100_000, 0.0) == 60
    assert Backoff(initial=0, max_delay=60).delay(100_000, 0.0) == 0


@pytest.mark.parametrize(
    "options", [{"initial": -1}, {"factor": float("nan")}, {"jitter": 1.5}, {"max_retries": -1}]
)
def test_invalid_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Backoff(**options)


backoffs = st.builds(
    Backoff,
    initial=st.floats(0, 100),
    factor=st.floats(1, 10),
    max_delay=st.floats(0, 1000),
    jitter=st.floats(0, 1),
)


@given(backoffs, st.integers(0, 5000), st.floats(0, 1, exclude_max=True))
def test_every_delay_is_within_its_bounds(backoff: Backoff, attempt: int, random: float) -> None:
    full = backoff.delay(attempt, 0.0)
    assert 0 <= full <= backoff.max_delay
    delay = backoff.delay(attempt, random)
    assert full * (1 - backoff.jitter) - 1e-9 <= delay <= full


@given(backoffs, st.integers(0, 200))
def test_delays_never_shrink_without_jitter(backoff: Backoff, attempt: int) -> None:
    assert backoff.delay(attempt, 0.0) <= backoff.delay(attempt + 1, 0.0)


# -- what is retried ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        (1000, True), (1001, True), (1005, True), (1006, True), (1011, True), (1012, True),
        (1013, True), (1014, True), (1002, False), (1003, False), (1007, False), (1008, False),
        (1009, False), (1010, False), (1015, False), (3000, False), (4000, False),
    ],
)  # fmt: skip
def test_close_codes(code: int, retried: bool) -> None:
    assert should_retry(SessionClosed(code)) is retried
    assert (code in RETRIED_CLOSE_CODES) is retried


@pytest.mark.parametrize(
    ("status", "retried"),
    [(400, False), (401, False), (403, False), (404, False), (408, True), (429, True), (500, True),
     (502, True), (503, True), (599, True), (200, False), (301, False)],
)  # fmt: skip
def test_refused_upgrades(status: int, retried: bool) -> None:
    assert should_retry(HandshakeRejected(status, (), b"")) is retried


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (ConnectionRefusedError(111, "refused"), True),
        (ConnectionResetError(104, "reset"), True),
        (OSError("all attempts to connect failed"), True),
        (TimeoutError("connect timeout"), True),
        (HandshakeError("the connection ended during the handshake"), True),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), False),
        (LocalProtocolError("not a ws:// or wss:// URL"), False),
        (ValueError("bad argument"), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_failures(failure: BaseException, retried: bool) -> None:
    assert should_retry(failure) is retried


def test_a_session_that_lived_resets_the_count() -> None:
    reconnector = Reconnector(Backoff(initial=1, jitter=0, reset_after=10))
    lost = SessionClosed(1006)
    assert reconnector.next_delay(ConnectionRefusedError(), now=0, random=0.5) == 1
    assert reconnector.next_delay(ConnectionRefusedError(), now=1, random=0.5) == 2
    reconnector.opened(3)
    assert reconnector.next_delay(lost, now=12.9, random=0.5) == 4  # lived 9.9 s: no reset
    reconnector.opened(17)
    assert reconnector.next_delay(lost, now=27, random=0.5) == 1  # lived 10 s
    assert reconnector.attempts == 1


def test_max_retries_and_fatal_failures_stop() -> None:
    reconnector = Reconnector(Backoff(max_retries=2))
    assert reconnector.next_delay(OSError(), now=0, random=0) is not None
    assert reconnector.next_delay(OSError(), now=0, random=0) is not None
    assert reconnector.next_delay(OSError(), now=0, random=0) is None
    assert Reconnector().next_delay(SessionClosed(1008), now=0, random=0) is None


# -- the loop, against a scripted connect, in virtual time --------------------------------


@attrs.define
class FakeSession:
    """What `Reconnecting` uses of a session."""

    number: int
    planned: int
    "The close code it ends with, unless closed before."
    close_code: int | None = None
    close_reason: str | None = None
    left_with: str | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.close_code, self.close_reason = code, reason

    async def wait_closed(self) -> None:
        await self.close(self.planned)  # the end comes at once, in virtual time


@attrs.define
class World:
    """A server that answers each attempt as its script says, a virtual clock, a log."""

    script: list[BaseException | tuple[float, int]]
    "Per attempt: the exception connecting raises, or (seconds the session lives, its close code)."
    now: float = 0.0
    log: list[str] = attrs.field(factory=list)
    sessions: list[FakeSession] = attrs.field(factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.log.append(f"sleep {seconds:g}")
        self.now += seconds

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[FakeSession]:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            self.log.append(f"failed {type(step).__name__}")
            raise step
        lives, code = step
        session = FakeSession(len(self.sessions) + 1, code)
        self.sessions.append(session)
        self.log.append(f"session {session.number}")
        try:
            yield session
        except BaseException as exc:
            session.left_with = type(exc).__name__
            await session.close(1001)
            raise
        self.now += lives
        await session.close(code)

    def reconnecting(self, backoff: Backoff) -> Reconnecting[Any]:
        return Reconnecting(
            self.connect,
            sleep=self.sleep,
            clock=self.clock,
            random=lambda: 0.5,
            backoff=backoff,
            logger=logging.getLogger("test"),
            where="ws://test/",
        )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never really waits (virtual time): one step."""
    with pytest.raises(StopIteration) as stopped:
        coro.send(None)
    return stopped.value.value  # type: ignore[no-any-return]


FAST = Backoff(initial=1, factor=2, max_delay=8, jitter=0.5, reset_after=60)


def test_the_loop_retries_reconnects_and_raises_what_is_not_retried() -> None:
    world = World(
        [
            ConnectionRefusedError(),
            ConnectionRefusedError(),
            (100.0, 1001),  # a session that lived: the count starts again
            HandshakeRejected(503, (), b""),
            (1.0, 1006),
            (1.0, 1008),  # policy violation: the end
        ]
    )
    opened: list[int] = []

    async def main() -> None:
        async with world.reconnecting(FAST) as sessions:
            async for session in sessions:
                opened.append(session.number)
                await session.wait_closed()

    with pytest.raises(SessionClosed) as caught:
        run(main())
    assert caught.value.code == 1008
    assert opened == [1, 2, 3]
    assert world.log == [
        "failed ConnectionRefusedError", "sleep 0.75",
        "failed ConnectionRefusedError", "sleep 1.5",
        "session 1", "sleep 0.75",
        "failed HandshakeRejected", "sleep 1.5",
        "session 2", "sleep 3",
        "session 3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("how", "close_code", "left_with"), [("break", 1000, "GeneratorExit"), ("raise", 1001, "KeyError")]
)
def test_leaving_the_loop_closes_the_session(how: str, close_code: int, left_with: str) -> None:
    # `break` closes the session normally first, then ends the `connect()` block.
    world = World([(0.0, 1000), (0.0, 1000)])

    async def main() -> None:
        async with world.reconnecting(FAST) as sessions:
            async for session in sessions:
                if session.number == 2:
                    if how == "break":
                        break
                    raise KeyError("the caller's own")

    if how == "raise":
        with pytest.raises(KeyError):
            run(main())
    else:
        run(main())
    assert world.sessions[1].close_code == close_code
    assert world.sessions[1].left_with == left_with


def test_the_callers_own_oserror_is_not_retried() -> None:
    world = World([(0.0, 1000), (0.0, 1000)])

    async def main() -> None:
        async with world.reconnecting(FAST) as sessions:
            async for _ in sessions:
                raise ConnectionResetError("from the caller's code, not the connection")

    with pytest.raises(ConnectionResetError):
        run(main())
    assert world.log == ["session 1"]


def test_keep_connected_runs_on_session_for_each() -> None:
    world = World([(0.0, 1012), (0.0, 1012), (0.0, 1003)])
    seen: list[int] = []

    async def on_session(session: FakeSession) -> None:
        seen.append(session.number)

    with pytest.raises(SessionClosed) as caught:
        run(keep_connected(world.reconnecting(FAST), on_session))
    assert seen == [1, 2, 3]
    assert caught.value.code == 1003


def test_iterating_outside_async_with_or_entering_twice_is_refused() -> None:
    world = World([])
    sessions = world.reconnecting(FAST)

    async def iterate() -> None:
        async for _ in sessions:
            pass

    with pytest.raises(LocalProtocolError):
        run(iterate())

    async def twice() -> None:
        async with sessions, sessions:
            pass

    with pytest.raises(LocalProtocolError):
        run(twice())
