"""`SessionDriver`: the parts of a session put together, its facts, and its end.

Each part is a mixin of one concern on `Pump` (the primitives and the pump): `Calls` (our
requests and pings), `Dispatch` (the peer's messages to their handlers), `Handshake` (the
opening handshake and the upgrade hook) and `HubMember` (the session's id and groups).
Here they get their state, the event table that routes each event to its part, and what
belongs to the session as a whole: its facts, closing it, and acting on its end.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .._connection import Connection
from .._events import (
    CancelRequested,
    ConnectionClosed,
    Event,
    HandshakeAccepted,
    Headers,
    NotificationReceived,
    PongReceived,
    RequestReceived,
    UpgradeRejected,
    UpgradeRequested,
)
from ._calls import Calls
from ._dispatch import Dispatch
from ._handshake import Handshake
from ._hub import HubMember
from ._outcomes import OUTCOMES

if TYPE_CHECKING:
    from . import UpgradeHook

__all__ = ["SessionDriver"]

W = TypeVar("W")
H = TypeVar("H")


_EVENT_HANDLERS: dict[type[Event], str] = {
    **dict.fromkeys(OUTCOMES, "_on_outcome"),
    RequestReceived: "_on_request",
    NotificationReceived: "_on_notification",
    CancelRequested: "_on_cancel_requested",
    PongReceived: "_on_pong",
    UpgradeRequested: "_on_upgrade_requested",
    HandshakeAccepted: "_on_handshake_accepted",
    UpgradeRejected: "_on_upgrade_rejected",
    ConnectionClosed: "_on_closed",
}


class SessionDriver(Calls[W, H], Dispatch[W, H], Handshake[W, H], HubMember[W, H]):
    """A session over some I/O, minus the I/O: the base of every adapter's `Session`.

    It owns the `Connection` and everything decided about it: the pump (take the events
    and act on each, write, re-arm the timer), the table of our requests waiting for their
    outcome, the pings waiting for their pong, the end of the opening handshake, the peer's
    requests in flight and the queue of notifications, and `request`, `notify`, `ping` and
    `close` themselves. `W` is the adapter's waiter type, `H` its handle on a task.

    An adapter subclass provides the primitives, each a few lines of its loop's API:

    - `_now()`: the connection's clock; `_clock()` times pings (default `_now`).
    - `_new_waiter()` makes a waiter for the current task; `_park(waiter)` returns what to
      await until `_wake(waiter, value)`, which gives `value` (a wake after the waiting
      task gave up does nothing). Giving up raises the loop's cancellation, a
      `BaseException`.
    - `_spawn(coro)` runs a coroutine in a task of the session and returns a handle that
      `_cancel(handle)` cancels (the handle exists before the task first runs: a `$/cancel`
      in the same read cancels it); `_spawn_notifier(coro)` runs the notification
      delivery, which survives the end of the session for `TEARDOWN_GRACE`.
    - `_flush()` writes `data_to_send()`, closes the transport when the connection says
      so, and stops or resumes reading as `_reading_blocked()` says; `_sent()` is called
      after a task gave the connection something to send (flush now, or soon);
      `_arm_timer(deadline)` sets the one timer, which calls `_timer_fired(now)`.
    - `_write_blocked()` says whether writes wait for the transport, and `await
      _drained()` waits until they do not; `await _checkpoint()` is the loop's
      cancellation and scheduling point.
    - `start()` and `wait_closed()` (public), and optionally `_session_ended()` (the
      connection is over) and `_begin(coro)`.
    """

    _event_handlers = _EVENT_HANDLERS

    def __init__(
        self, conn: Connection, *, remote_address: Any = None, upgrade_hook: UpgradeHook | None = None
    ) -> None:
        """Drive `conn`; `upgrade_hook` decides a server's upgrades (`None` accepts)."""
        self._conn = conn
        self._remote_address = remote_address
        self._upgrade_hook = upgrade_hook
        # The hub (`HubMember`).
        self._id = None
        self._hub = None
        # The handlers (`Dispatch`): the peer's requests whose handler may still answer,
        # and the notifications (and requests behind them) waiting for their turn.
        self._request_handlers = {}
        self._notification_handlers = {}
        self._any_request = None
        self._any_notification = None
        self._in_flight = {}
        self._notifications = ()
        self._notifying = False
        # Our requests and pings waiting (`Calls`).
        self._waiters = {}
        self._ping_waiters = {}
        # The opening handshake (`Handshake`).
        self._handshake_over = False
        self._handshake_error = None
        self._handshake_waiters = []
        # The pump (`Pump`), and the part of the session that acts on each event.
        self._pumping = False
        self._timer_at = None

    # -- facts -------------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The close code that ended the session (`None` until it has ended).

        The peer's code when it closed first, ours when we did; 1005 for a close frame
        without a code (how session-rs closes), 1006 for a connection lost without one.
        """
        return self._conn.close_code if self.closed else None

    @property
    def close_reason(self) -> str | None:
        """The reason that came with `close_code` (`None` until the session has ended)."""
        return self._conn.close_reason if self.closed else None

    @property
    def path(self) -> str:
        """The request target of the opening handshake, such as `/chat?room=1`."""
        return self._conn.path

    @property
    def request_headers(self) -> Headers:
        """Server: the upgrade request's headers. Client: the extra headers it sent."""
        return self._conn.request_headers

    @property
    def response_headers(self) -> Headers:
        """Client: the 101 response's extra headers. Server: the extra headers it sent."""
        return self._conn.response_headers

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, if any."""
        return self._conn.subprotocol

    @property
    def remote_address(self) -> Any:
        """The peer's socket address (`(host, port)` over TCP), or `None` if unknown."""
        return self._remote_address

    # -- closing -----------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session and wait for it to end.

        The wait for the peer's close frame is bounded by `Config.close_timeout`. Requests
        still waiting fail at once with `SessionClosed`; the handlers are cancelled when the
        session ends, and waited for. Closing a closed session does nothing.

        Raises:
            LocalProtocolError: `code` is not a code one may send, or `reason` is over
                123 bytes of UTF-8.
        """
        self.close_nowait(code, reason)
        await self.wait_closed()

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start closing the session and return at once (`close` without the wait).

        Raises:
            LocalProtocolError: as `close`.
        """
        self._conn.close(code, reason, now=self._now())
        self._pump()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Session {self._conn.role.value} {self._conn.state.value} {self._remote_address!r}>"

    def _on_closed(self, event: ConnectionClosed) -> None:
        self._handshake_failed(event)
        self._fail_pings(event)
        # The handlers still running can no longer answer.
        self._in_flight.clear()
        self._detach_hub()  # it leaves all its groups
        self._session_ended()
