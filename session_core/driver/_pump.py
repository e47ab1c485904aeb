"""The base of every part of a session: the adapter's primitives, and the pump they run.

`Pump` holds what every other part of `SessionDriver` uses: the connection, the contract of
the primitives an adapter implements, and the pump itself (take the events and act on each,
write, re-arm the timer). The parts (`_calls`, `_dispatch`, `_handshake`, `_hub`) are
mixins on top of it rather than helper objects, because the adapters read their state on
the session itself and because the pump calls their event handlers with no hop between.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, ClassVar, Generic, TypeVar

from .._connection import Connection
from .._events import Event
from .._state import State
from ._outcomes import log_event

__all__ = ["TEARDOWN_GRACE", "Pump"]

W = TypeVar("W")
H = TypeVar("H")

#: Seconds a session being torn down spends on its last write and its close, and that the
#: notifications received before the end have to reach their handlers.
TEARDOWN_GRACE = 1.0


class Pump(Generic[W, H]):
    """The connection, the primitives an adapter implements, and the pump.

    `W` is the adapter's waiter type, `H` its handle on a task. The primitives raise
    `NotImplementedError` here; `SessionDriver` documents the whole contract.
    """

    #: Where the driver logs (each adapter names its own).
    _logger: ClassVar[logging.Logger] = logging.getLogger("session_core.driver")
    #: Whether a request handler cancelled by something else than the peer's `$/cancel`
    #: or the end of the session is answered -32800 (asyncio: a task can be cancelled by
    #: anyone; trio: a handler is only cancelled by its session, and needs no answer).
    _answer_cancelled: ClassVar[bool] = True

    # Set by `SessionDriver.__init__`, which sets the state of every part in one place.
    _conn: Connection
    _remote_address: Any
    # Whether the pump runs (an event's action may call it again), and the timer's deadline.
    _pumping: bool
    _timer_at: float | None
    # The name of each event type's action, from the parts of the session: one table for
    # all sessions (bound methods per session would be some 1.2 KB each).
    _event_handlers: ClassVar[dict[type[Event], str]]

    # -- primitives (the adapter's) ---------------------------------------------------

    def _now(self) -> float:
        """The loop's clock, as the connection's `now`."""
        raise NotImplementedError

    def _clock(self) -> float:
        """The clock that times pings (by default `_now`)."""
        return self._now()

    def _new_waiter(self) -> W:
        """A waiter for the current task, for `_park` and `_wake`."""
        raise NotImplementedError

    def _park(self, waiter: W) -> Awaitable[Any]:
        """What to await until `_wake(waiter, value)`; it gives `value`. A cancellation
        raises; a wake after it does nothing."""
        raise NotImplementedError

    def _wake(self, waiter: W, value: Any) -> None:
        """Resume the task parked on `waiter` with `value` (nothing if it gave up)."""
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> H:
        """Run `coro` in a task of the session; return a handle for `_cancel`, made before
        the task first runs."""
        raise NotImplementedError

    def _spawn_notifier(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run the notification delivery `coro`, which outlives the session's end by at
        most `TEARDOWN_GRACE`."""
        raise NotImplementedError

    def _cancel(self, handle: H) -> None:
        """Cancel the task of `handle` (from `_spawn`)."""
        raise NotImplementedError

    def _flush(self) -> None:
        """Write `data_to_send()`, close the transport when the connection says so, and
        stop or resume reading as `_reading_blocked()` says."""
        raise NotImplementedError

    def _sent(self) -> None:
        """A task gave the connection something to send: pump now (the default) or soon."""
        self._pump()

    def _sent_soon(self) -> None:
        """Like `_sent`, for a send that is one of many made together (a fan-out): it may
        wait for the others of this turn of the loop, to leave in one write. The default
        is `_sent`."""
        self._sent()

    def _arm_timer(self, deadline: float | None) -> None:
        """Set the one timer to call `_timer_fired(now)` at `deadline` (`None`: no timer)."""
        raise NotImplementedError

    def _write_blocked(self) -> bool:
        """Whether writes wait for the transport (write flow control)."""
        raise NotImplementedError

    async def _drained(self) -> None:
        """Wait until `_write_blocked()` is false (or the session ended)."""
        raise NotImplementedError

    async def _checkpoint(self) -> None:
        """The loop's point where a task may be cancelled or yield (none in asyncio)."""
        raise NotImplementedError

    def _session_ended(self) -> None:
        """The connection is over (its `ConnectionClosed` was just handled)."""

    async def _begin(self, coro: Coroutine[Any, Any, object]) -> object:
        """Run the user's code on a new session, starting delivery once it first yields.

        `start()` defers delivery to a later turn of the loop, so that calling it first is
        enough; a loop whose scheduler runs tasks in any order overrides this.
        """
        self.start()
        return await coro

    def start(self) -> None:
        """Let the session deliver the peer's messages, once the caller next yields.

        The connection holds what the peer sends after the handshake until then, so that
        the handlers registered before the caller's first `await` see every message.
        `connect` and `serve` call it; a custom driver calls it when its user had the
        chance to register handlers.
        """
        raise NotImplementedError

    async def wait_closed(self) -> None:
        """Wait until the session has ended, its transport is closed and its handlers are done."""
        raise NotImplementedError

    # -- the one fact every part needs ---------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the session has ended (the close handshake is over or the connection lost)."""
        return self._conn.state is State.CLOSED

    # -- the pump ----------------------------------------------------------------------

    def _pump(self) -> None:
        """Act on every event, write, re-arm the timer: after every input or call."""
        if self._pumping:
            return  # called from inside the pump (an event's action): the outer one goes on
        self._pumping = True
        try:
            conn = self._conn
            handlers = self._event_handlers
            events = conn.events()
            while events:
                for event in events:
                    getattr(self, handlers.get(type(event), "_log_event"))(event)
                events = conn.events()  # answering may resume held input
            self._flush()
            deadline = conn.get_timer()
            if deadline != self._timer_at:
                self._timer_at = deadline
                self._arm_timer(deadline)
        finally:
            self._pumping = False

    def _timer_fired(self, now: float) -> None:
        """The timer set by `_arm_timer` expired (`now` is at or past its deadline)."""
        self._timer_at = None
        self._conn.handle_timer(now)
        self._pump()

    def _log_event(self, event: Event) -> None:
        # Events no part of the session acts on.
        log_event(self._logger, event)
