"""The reconnecting loop of every adapter, written once against an abstract connect and sleep.

`Reconnecting` opens a session, hands it to the caller, and when it has ended (or the
attempt failed) asks `Reconnector` whether and when to try again. An adapter supplies
only its own `connect`, its loop's sleep and clock, and a random source; nothing here
imports an event loop, a clock or a random module.

It is an async context manager around the iteration, not a bare async generator: under
trio a session lives in a nursery, and a generator abandoned by `break` would be closed
later from elsewhere, which trio forbids (its cancel scopes would no longer nest); under
asyncio it would leave the session open until the garbage collector runs. Leaving the
`async with` block closes the current session at once, on both loops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Self, TypeVar

from .._backoff import Backoff, Reconnector
from .._errors import LocalProtocolError, SessionClosed

if TYPE_CHECKING:
    from ._session import SessionDriver

__all__ = ["Reconnecting", "keep_connected"]

S = TypeVar("S", bound="SessionDriver[Any, Any]")


class Reconnecting(Generic[S]):
    """Sessions to one server, one after the other, with a backoff between them.

    What `reconnecting()` of `session_trio` and `session_asyncio` returns::

        async with session_asyncio.reconnecting(url, backoff=Backoff(max_delay=10)) as sessions:
            async for session in sessions:
                session.on_notification(tick, on_tick)  # again for each new session
                await session.wait_closed()  # then the next iteration reconnects

    Each iteration gives a new open session, as `connect()` would; register its handlers
    before the first `await`, as with `connect()`. The next iteration closes the session
    if it is still open (1000), waits the backoff's delay, and connects again; a
    connection that fails is tried again the same way. The iteration ends by raising
    the failure that `should_retry` says not to retry: `SessionClosed` for a session
    closed with such a code (1008 policy violation, 1002 protocol error, ...),
    `HandshakeRejected` for a 4xx refusal, `LocalProtocolError` for a bad URL,
    `ssl.SSLCertVerificationError`; or the last failure once `Backoff.max_retries`
    attempts in a row failed.

    Nothing is retried behind the caller's back: the requests waiting when a session
    ends fail with `SessionClosed`, and whether to send them again on the next session
    is the caller's decision.

    Leaving the `async with` block ends it all: normally (after `break`), the current
    session is closed with 1000 and the close handshake awaited; with an exception or a
    cancellation, it is sent 1001 without waiting, and the exception propagates.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[S]],
        *,
        sleep: Callable[[float], Awaitable[object]],
        clock: Callable[[], float],
        random: Callable[[], float],
        backoff: Backoff | None = None,
        logger: logging.Logger,
        where: str,
    ) -> None:
        """Reconnect with `connect()` (an adapter's `connect` with its options).

        Args:
            connect: opens one session, as an async context manager.
            sleep: the loop's sleep.
            clock: the loop's monotonic clock, in seconds.
            random: values in [0, 1), for the jitter.
            backoff: the delays (default `Backoff()`).
            logger: where attempts and delays are logged (at info level).
            where: the server, for the log.
        """
        self._connect = connect
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._logger = logger
        self._where = where
        self._reconnector = Reconnector(backoff)
        self._generator: AsyncGenerator[S, None] | None = None
        self._entered = False
        self._leaving = False
        self._session: S | None = None
        self.last_failure: BaseException | None = None
        "What ended the last session or attempt (`SessionClosed` for a session), if anything."
        self.opened = 0
        "How many sessions were opened so far."

    @property
    def session(self) -> S | None:
        """The current session, while the iteration holds one."""
        return self._session

    async def __aenter__(self) -> Self:
        if self._entered:
            raise LocalProtocolError("a Reconnecting is entered once")
        self._entered = True
        self._generator = self._sessions()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        generator, self._generator = self._generator, None
        if generator is None:
            return
        if exc is None:
            session = self._session
            if session is not None and not session.closed:
                await session.close()  # left normally (`break`): a normal close, awaited
            await generator.aclose()
            return
        # Leaving with an exception or a cancellation: it goes through the current
        # `connect()` block as if raised there (trio's nurseries see their own
        # cancellation, the session is sent 1001), and is never taken for a failure.
        self._leaving = True
        try:
            await generator.athrow(exc)
        except BaseException as raised:
            if raised is not exc:
                raise

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> S:
        if self._generator is None:
            raise LocalProtocolError("iterate inside `async with reconnecting(...) as sessions:`")
        try:
            return await self._generator.__anext__()
        except BaseException:
            self._generator = None  # over: it raised what ended it
            raise

    async def _sessions(self) -> AsyncGenerator[S, None]:
        reconnector = self._reconnector
        while True:
            session: S | None = None
            try:
                async with self._connect() as session:
                    self._session = session
                    self.opened += 1
                    reconnector.opened(self._clock())
                    yield session
                    # The caller asked for the next session: this one closes (1000).
                # Closed by now; a close code is there unless the adapter broke its contract.
                failure: BaseException = SessionClosed(session.close_code or 1006, session.close_reason or "")
            except Exception as exc:
                if self._leaving:
                    raise  # the caller's own exception, thrown in by `__aexit__`
                failure = exc  # connecting failed (or closing raised)
            finally:
                self._session = None
            self.last_failure = failure
            delay = reconnector.next_delay(failure, now=self._clock(), random=self._random())
            if delay is None:
                raise failure
            if session is None:
                self._logger.info(
                    "connecting to %s failed (%s); next try in %.2f s", self._where, failure, delay
                )
            else:
                self._logger.info(
                    "the session with %s ended (%s); reconnecting in %.2f s", self._where, failure, delay
                )
            await self._sleep(delay)


async def keep_connected(sessions: Reconnecting[S], on_session: Callable[[S], Awaitable[object]]) -> NoReturn:
    """The callback form of `Reconnecting`: `on_session(session)` for each new session.

    `on_session` registers the session's handlers (before its first `await`) and may use
    the session; its return does not close it, the next session is opened once this one
    has ended. An exception from `on_session` ends everything (the session is sent 1001)
    and propagates; so does a failure not to be retried.
    """
    async with sessions:
        async for session in sessions:
            await on_session(session)
            await session.wait_closed()
    raise AssertionError("unreachable: the iteration ends only by raising")
