"""Our side of the conversation: requests and pings, and the callers waiting for them.

A request parks its caller until the outcome event for its id comes through the pump; a
ping parks its caller until its pong, or the end of the session. A caller that gives up
takes its waiter back, and the peer learns of it (`$/cancel`).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from .._errors import SessionClosed
from .._events import ConnectionClosed, PongReceived
from .._methods import Method
from ._outcomes import result_of
from ._pump import Pump

__all__ = ["Calls"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
W = TypeVar("W")
H = TypeVar("H")


class Calls(Pump[W, H]):
    """`request`, `notify`, `notify_nowait` and `ping`, and the tables of their waiting callers."""

    # Our requests waiting for their outcome event, and pings for their pong.
    _waiters: dict[int, W]
    _ping_waiters: dict[int, W]

    @overload
    async def request(
        self, method: Method[Req, Resp, Any], data: Req, *, timeout: float | None = None
    ) -> Resp: ...
    @overload
    async def request(self, method: str, data: Any, *, timeout: float | None = None) -> Any: ...
    async def request(
        self, method: Method[Any, Any, Any] | str, data: Any, *, timeout: float | None = None
    ) -> Any:
        """Call `method` on the peer and return its typed response.

        Args:
            method: a `Method` (typed), or a method name (raw JSON in and out).
            data: the request data, of the method's request type.
            timeout: seconds to wait for the answer (default `Config.request_timeout`).

        Returns:
            The response, converted to the method's response type.

        Raises:
            RemoteError: the peer answered with an error response; `error` holds the value,
                typed with the method's error type. Protocol errors raise its subclasses
                `MethodNotFound`, `InvalidRequestData`, `InternalError`, `RequestCancelled`.
            InvalidResponse: the answer does not fit the method's types.
            TimeoutError: the builtin one (in trio too, not `trio.TooSlowError`): no
                answer within `timeout`; the peer was sent `$/cancel`.
            SessionClosed: the session ended before the answer, or had ended already.
            EncodingError: `data` cannot be sent.
            TooManyPendingRequests: `Config.max_pending_requests` requests already wait.

        Cancelling the calling task gives the request up: the peer is sent `$/cancel`.
        """
        conn = self._conn
        request_id = conn.send_request(method, data, now=self._now(), timeout=timeout)
        waiter = self._waiters[request_id] = self._new_waiter()
        self._sent()
        try:
            outcome = await self._park(waiter)
        except BaseException:
            # Given up (cancelled): unless the outcome came meanwhile, tell the peer.
            if self._waiters.pop(request_id, None) is not None and conn.cancel_request(request_id):
                self._sent()
            raise
        return result_of(outcome)

    @overload
    async def notify(self, method: Method[Req, Any, Any], data: Req) -> None: ...
    @overload
    async def notify(self, method: str, data: Any) -> None: ...
    async def notify(self, method: Method[Any, Any, Any] | str, data: Any) -> None:
        """Send a notification (never answered).

        Returns once the notification is queued. While the transport does not take more
        (the peer does not read) it waits first, so that a fast sender cannot outrun the
        socket; cancelled while it waits, it has sent nothing.

        Raises:
            SessionClosed: the session is closing or closed.
            EncodingError: `data` cannot be sent.
        """
        # Wait first: a notify cancelled while it waits has sent nothing.
        if self._write_blocked():
            await self._drained()
        else:
            await self._checkpoint()
        self._conn.send_notification(method, data)
        self._sent()

    def notify_nowait(self, method: Method[Any, Any, Any] | str, data: Any) -> bool:
        """Send a notification now if the transport takes more, without waiting.

        For code that fans one message out to many sessions (the hub): no task switch per
        session, and the writes of one turn of the loop still leave together.

        Returns:
            True when the notification is queued; False when writes wait for the transport
            (the peer does not read): nothing was sent, `notify` would have waited.

        Raises:
            SessionClosed: the session is closing or closed.
            EncodingError: `data` cannot be sent.
        """
        if self._write_blocked():
            return False
        self._conn.send_notification(method, data)
        self._sent_soon()
        return True

    async def ping(self) -> float:
        """Send a ping and wait for its pong.

        Returns:
            The round-trip time, in seconds.

        Raises:
            SessionClosed: the session is closing or closed, or ended before the pong.
        """
        ping_id = self._conn.send_ping()
        waiter = self._ping_waiters[ping_id] = self._new_waiter()
        sent_at = self._clock()
        self._pump()  # at once: the round trip is the point
        try:
            answer = await self._park(waiter)
        except BaseException:
            self._ping_waiters.pop(ping_id, None)
            raise
        if isinstance(answer, ConnectionClosed):
            raise SessionClosed(answer.code, answer.reason)
        return float(answer) - sent_at

    # -- events ------------------------------------------------------------------------

    def _on_outcome(self, event: Any) -> None:
        # One of `OUTCOMES`: `request()` turns it into its result or exception.
        waiter = self._waiters.pop(event.request_id, None)
        if waiter is not None:
            self._wake(waiter, event)

    def _on_pong(self, event: PongReceived) -> None:
        waiter = self._ping_waiters.pop(event.ping_id, None)
        if waiter is not None:
            self._wake(waiter, self._clock())

    def _fail_pings(self, event: ConnectionClosed) -> None:
        # The connection has ended every request with `RequestAborted` already; pings
        # have no such event.
        pings, self._ping_waiters = self._ping_waiters, {}
        for waiter in pings.values():
            self._wake(waiter, event)
