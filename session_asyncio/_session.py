"""`Session`: one session over asyncio, driving a `session_core.Connection`.

The connection does all the protocol work; this module only moves bytes between it and an
`asyncio.Transport`, wakes the tasks that wait on it and schedules its timer. The pump,
after every input or call (HOUSE-STYLE section 5): take the events and act on them, write
`data_to_send()` in one `transport.write`, close the transport when the connection says so,
pause or resume reading, and re-arm the timer from `get_timer()`.

Calls made from tasks (`request`, `notify`, a handler's answer) do not write at once: they
schedule one pump for the next turn of the loop, so that everything the tasks of one turn
send goes out in a single write (a busy session writes once per turn, not once per message).
Once 64 KiB wait, the pump runs at once, so that write flow control still bounds a task that
sends in a loop without yielding.

Handlers are registered on an open session, but a peer may send its first messages in the
same read as the handshake (the 101 and a `welcome` notification, say). The connection is
built with `wait_for_start`: it holds every message after the handshake, and the session
reads nothing more, until `Connection.start()`, which the session calls once the user had
one turn of the loop to register handlers (the `async with connect(...)` body, or
`on_session`, up to its first `await`).

Notifications reach their handlers one at a time, in arrival order, through one task that
runs while any wait. At most `MAX_QUEUED_NOTIFICATIONS` wait: at the bound the session stops
reading, as the connection does at `Config.max_incoming_requests` requests in flight. When
the connection is over, the request handlers are cancelled (their answers can no longer go
out), while the notifications received before the end still reach their handlers, for at
most `TEARDOWN_GRACE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeAlias, TypeVar, cast, overload

from session_core import (
    OUTCOMES,
    Accept,
    CancelRequested,
    Connection,
    ConnectionClosed,
    ErrorCode,
    Event,
    HandshakeAccepted,
    HandshakeError,
    HandshakeRejected,
    Method,
    NotificationReceived,
    PongReceived,
    Reject,
    RequestReceived,
    SessionClosed,
    State,
    UpgradeRejected,
    UpgradeRequested,
    log_event,
    result_of,
)
from session_core._sessionbase import NotificationHandler, RequestHandler, SessionBase

__all__ = ["NotificationHandler", "RequestHandler", "Session", "UpgradeHook"]

logger = logging.getLogger("session_asyncio")

Req = TypeVar("Req")
Resp = TypeVar("Resp")

Decision: TypeAlias = Accept | Reject | None
UpgradeHook: TypeAlias = Callable[[UpgradeRequested, Any], Decision | Awaitable[Decision]]
"""`on_upgrade(request, remote_address)`, sync or async: `Accept`, `Reject` or `None` (accept)."""

#: Notifications received and not yet handed to their handler, at most; at the bound the
#: session stops reading (one read more may arrive before it does).
MAX_QUEUED_NOTIFICATIONS = 128
#: Seconds that the notifications received before the end of a session have to reach
#: their handlers, once it has ended.
TEARDOWN_GRACE = 1.0
#: The code a session sends when it leaves without a close handshake, and at server
#: shutdown (RFC 6455 7.4.1, "going away").
GOING_AWAY = 1001

# How many bytes sent from tasks may wait for the scheduled pump before one is forced.
# Small enough that a burst of answers starts to go out while the rest are still being
# made, so that the peer works on the first ones meanwhile instead of both sides taking
# turns (4 KiB measured best with 100 requests in flight: about 1.7x the throughput of
# 64 KiB in `python -m benchmarks.e2e --impl session_asyncio --scenario inflight100`);
# large enough to coalesce small messages into few writes. It also bounds what bypasses
# write flow control when a task sends in a loop without yielding.
_MAX_UNFLUSHED = 4 * 1024
# Grace for the transport to flush its last bytes after we closed it, when the connection
# has no close timeout of its own.
_DEFAULT_ABORT_DELAY = 10.0
# Marks a request that its handler no longer answers (taken out of `Session._in_flight`).
_GONE: Any = object()


class _Protocol(asyncio.Protocol):
    """The `asyncio.Protocol` of a session: forwards every callback to it."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only look alike.
        self._session._connection_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self._session._data_received(data)

    def eof_received(self) -> None:
        self._session._eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._session._connection_lost()

    def pause_writing(self) -> None:
        self._session._write_paused = True

    def resume_writing(self) -> None:
        self._session._write_paused = False
        self._session._wake_writers()


class Session(SessionBase):
    """One end of a session: send requests and notifications, serve the peer's.

    Sessions come from `session_asyncio.connect()` (client) and from the `on_session`
    callback of `session_asyncio.serve()` (server); do not build one yourself. Both ends
    are equal: each can call the other's methods.

    Register handlers before the first `await` after the session is handed to you (in the
    `async with connect(...)` body, or at the top of `on_session`): the session holds what
    the peer sends until then, so that no early message misses its handler.

    Closing: leave `async with session`, or call `close()`. When the session ends, every
    `request()` still waiting fails at once with `SessionClosed` and the request handlers
    are cancelled; the notifications received before the end still reach their handlers,
    for at most `TEARDOWN_GRACE` seconds.
    """

    def __init__(
        self,
        conn: Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        on_upgrade: UpgradeHook | None = None,
        on_made: Callable[[Session], None] | None = None,
        on_open: Callable[[Session], None] | None = None,
        on_finished: Callable[[Session], None] | None = None,
    ) -> None:
        """Wrap `conn` (used by `connect()` and `serve()`, not by users)."""
        self._conn = conn
        self._loop = loop
        self._protocol = _Protocol(self)
        self._transport: asyncio.Transport | None = None
        self._remote_address: Any = None
        self._on_upgrade = on_upgrade
        self._on_made = on_made
        self._on_open = on_open
        self._on_finished = on_finished
        # Our requests (waiting for their outcome event) and pings.
        self._waiters: dict[int, asyncio.Future[Event]] = {}
        self._pings: dict[int, asyncio.Future[float]] = {}
        # Handlers: by method name, then the tasks running them.
        self._request_handlers: dict[str, RequestHandler[Any, Any]] = {}
        self._notification_handlers: dict[str, NotificationHandler[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: dict[int, asyncio.Task[Any] | None] = {}
        # Notifications waiting for their handler, and the task that delivers them.
        self._notifications: list[tuple[NotificationHandler[Any], str, Any]] = []
        self._notifier: asyncio.Task[None] | None = None
        # The handshake and the end.
        self._handshake_done: asyncio.Future[None] = loop.create_future()
        self._handshake_error: HandshakeError | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        # Transport state.
        self._can_write = False
        self._write_paused = False
        self._writers: list[asyncio.Future[None]] = []
        self._reading_paused = False
        self._abort_handle: asyncio.TimerHandle | None = None
        # The pump.
        self._pumping = False
        self._flush_scheduled = False
        self._unflushed: list[bytes] = []
        self._unflushed_size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._event_handlers: dict[type[Event], Callable[[Any], None]] = {
            **dict.fromkeys(OUTCOMES, self._on_outcome),
            RequestReceived: self._on_request,
            NotificationReceived: self._on_notification,
            CancelRequested: self._on_cancel_requested,
            PongReceived: self._on_pong,
            UpgradeRequested: self._on_upgrade_requested,
            HandshakeAccepted: self._on_handshake_accepted,
            UpgradeRejected: self._on_upgrade_rejected,
            ConnectionClosed: self._on_closed,
        }

    # -- messages --------------------------------------------------------------------

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
            TimeoutError: no answer within `timeout`; the peer was sent `$/cancel`.
            SessionClosed: the session ended before the answer, or had ended already.
            EncodingError: `data` cannot be sent.
            TooManyPendingRequests: `Config.max_pending_requests` requests already wait.

        Cancelling the calling task gives the request up: the peer is sent `$/cancel`.
        """
        loop = self._loop
        request_id = self._conn.send_request(method, data, now=loop.time(), timeout=timeout)
        future: asyncio.Future[Event] = loop.create_future()
        self._waiters[request_id] = future
        self._kick()
        try:
            outcome = await future
        except asyncio.CancelledError:
            if self._waiters.pop(request_id, None) is not None and self._conn.cancel_request(request_id):
                self._kick()
            raise
        return result_of(outcome)

    @overload
    async def notify(self, method: Method[Req, Any, Any], data: Req) -> None: ...
    @overload
    async def notify(self, method: str, data: Any) -> None: ...
    async def notify(self, method: Method[Any, Any, Any] | str, data: Any) -> None:
        """Send a notification (never answered).

        Waits while the transport's write buffer is full (write flow control), so that a
        fast sender cannot outrun the socket.

        Raises:
            SessionClosed: the session is closing or closed.
            EncodingError: `data` cannot be sent.
        """
        if self._write_paused:
            await self._wait_writable()
        self._conn.send_notification(method, data)
        self._kick()

    async def ping(self) -> float:
        """Send a ping and wait for its pong.

        Returns:
            The round-trip time, in seconds.

        Raises:
            SessionClosed: the session is closing or closed, or ended before the pong.
        """
        ping_id = self._conn.send_ping()
        future: asyncio.Future[float] = self._loop.create_future()
        self._pings[ping_id] = future
        # perf_counter, not loop.time(): uvloop's clock ticks in milliseconds.
        sent_at = time.perf_counter()
        self._pump()  # at once: the round trip is the point
        try:
            return await future - sent_at
        except asyncio.CancelledError:
            if self._pings.pop(ping_id, None) is None and not future.cancelled():
                future.exception()  # the session ended at the same time: mark it retrieved
            raise

    # -- closing ---------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session and wait for it to end.

        The wait for the peer's close frame is bounded by `Config.close_timeout`. Requests
        still waiting fail at once with `SessionClosed`; the handlers are cancelled when the
        session ends, and waited for. Closing a closed session does nothing.

        Raises:
            LocalProtocolError: `code` is not a code one may send, or `reason` is over
                123 bytes of UTF-8.
        """
        self._start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the session has ended, its transport is closed and its handlers are done."""
        if not self._lost.done():
            await asyncio.wait((self._lost,))
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        if tasks:
            await asyncio.wait(tasks)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Session {self._conn.role.value} {self._conn.state.value} {self._remote_address!r}>"

    # -- internal: commands (for connect and serve) ------------------------------------

    def _start(self) -> None:
        """Deliver what the peer sent after the handshake: handlers are registered by now."""
        self._conn.start()
        self._pump()

    def _start_close(self, code: int, reason: str) -> None:
        self._conn.close(code, reason, now=self._loop.time())
        self._pump()

    def _going_away(self) -> None:
        """Leave at once (the `connect` block raised): send a close frame with 1001, close
        the transport without waiting for the peer's, and cancel the handlers."""
        if self._conn.state is State.OPEN:
            self._conn.close(GOING_AWAY, "going away", now=self._loop.time())
        self._pump()
        if self._transport is not None and self._can_write:
            self._close_transport(self._transport)
        self._notifications.clear()
        self._cancel_tasks(grace=False)

    def _abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        if self._transport is not None and self._can_write:
            self._can_write = False
            self._transport.abort()
        self._conn.close(now=self._loop.time())  # ends a connection still in its handshake
        self._pump()

    def _kick(self) -> None:
        """A task gave the connection something to send: pump on the next turn of the loop.

        The bytes are taken at once, so that the pump is forced when they grow large.
        """
        data = self._conn.data_to_send()
        if data:
            self._unflushed.append(data)
            self._unflushed_size += len(data)
            if self._unflushed_size >= _MAX_UNFLUSHED:
                self._pump()
                return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._flush_scheduled = False
        self._pump()

    async def _wait_writable(self) -> None:
        while self._write_paused and self._can_write:
            future = self._loop.create_future()
            self._writers.append(future)
            await future

    def _wake_writers(self) -> None:
        writers, self._writers = self._writers, []
        for future in writers:
            if not future.done():
                future.set_result(None)

    def _cancel_tasks(self, *, grace: bool) -> None:
        """Stop the handlers: the session has ended, their answers would be dropped.

        With `grace`, the notifications received before the end still reach their handlers
        for `TEARDOWN_GRACE` seconds.
        """
        self._in_flight.clear()
        current = asyncio.current_task(self._loop)
        for task in self._tasks:
            if task is current:
                continue
            if grace and task is self._notifier:
                self._loop.call_later(TEARDOWN_GRACE, task.cancel)
            else:
                task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        if not task.done():  # an eager task factory may have run it to its end already
            self._tasks.add(task)
            # A callback, not a `finally` in the coroutine: a task cancelled before its
            # first step never runs its coroutine.
            task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._check_finished()

    # -- internal: the pump -------------------------------------------------------------

    def _pump(self) -> None:
        """Act on the events, write, close, pause or resume reading, re-arm the timer."""
        if self._pumping:
            return  # called from inside the pump: the outer loop does the rest
        self._pumping = True
        try:
            conn = self._conn
            handlers = self._event_handlers
            events = conn.events()
            while events:
                for event in events:
                    handlers.get(type(event), self._log_event)(event)
                events = conn.events()
            transport = self._transport
            if transport is None:
                return  # not connected yet: the handshake request waits in the connection
            data = conn.data_to_send()
            if self._unflushed:
                self._unflushed.append(data)
                data = b"".join(self._unflushed)
                self._unflushed.clear()
                self._unflushed_size = 0
            if self._can_write:
                if data:
                    transport.write(data)
                if conn.should_close_transport:
                    self._close_transport(transport)
                else:
                    paused = conn.reading_paused or len(self._notifications) >= MAX_QUEUED_NOTIFICATIONS
                    if paused is not self._reading_paused:
                        self._reading_paused = paused
                        if paused:
                            transport.pause_reading()
                        else:
                            transport.resume_reading()
            deadline = conn.get_timer()
            if deadline != self._timer_at:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer_at = deadline
                self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)
        finally:
            self._pumping = False

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = self._timer_at = None
        if deadline is not None:
            self._conn.handle_timer(max(deadline, self._loop.time()))
        self._pump()

    def _close_transport(self, transport: asyncio.Transport) -> None:
        self._can_write = False
        transport.close()
        # close() waits for the write buffer to drain: a peer that reads nothing could hold
        # the transport open forever.
        delay = self._conn.config.close_timeout or _DEFAULT_ABORT_DELAY
        self._abort_handle = self._loop.call_later(delay, transport.abort)

    # -- internal: transport callbacks ----------------------------------------------------

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._can_write = True
        self._remote_address = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Both asyncio and uvloop set it already; make sure (PROTOCOL.md asks for it).
            with contextlib.suppress(OSError, AttributeError):  # exotic transports
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._on_made is not None:
            self._on_made(self)
        self._pump()

    def _data_received(self, data: bytes) -> None:
        self._conn.receive_data(data, self._loop.time())
        self._pump()

    def _eof_received(self) -> None:
        self._conn.receive_eof()
        self._pump()

    def _connection_lost(self) -> None:
        self._can_write = False
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        self._conn.receive_eof()
        self._pump()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._wake_writers()
        if not self._lost.done():
            self._lost.set_result(None)
        self._check_finished()

    def _check_finished(self) -> None:
        # Tell the server once the transport is gone and every task has ended.
        if self._on_finished is not None and not self._tasks and self._lost.done():
            on_finished, self._on_finished = self._on_finished, None
            on_finished(self)

    # -- internal: events ------------------------------------------------------------------

    def _on_outcome(self, event: Any) -> None:
        # One of `OUTCOMES`: `request()` turns it into its result or exception.
        future = self._waiters.pop(event.request_id, None)
        if future is not None and not future.done():
            future.set_result(event)

    def _on_request(self, event: RequestReceived) -> None:
        request_id = event.request_id
        # The connection is typed (built with `methods=()`): only registered methods get here.
        handler = self._request_handlers[event.method]
        self._in_flight[request_id] = None
        task = self._spawn(self._serve_request(request_id, handler, event.data))
        if request_id in self._in_flight:
            self._in_flight[request_id] = task

    async def _serve_request(self, request_id: int, handler: RequestHandler[Any, Any], data: Any) -> None:
        conn = self._conn
        try:
            result = await handler(data)
        except asyncio.CancelledError:
            if self._in_flight.pop(request_id, _GONE) is not _GONE and conn.state is State.OPEN:
                # Cancelled by neither the peer's `$/cancel` nor the session's end (both take
                # the request out of `_in_flight` first): it still needs an answer.
                conn.send_protocol_error(request_id, ErrorCode.REQUEST_CANCELLED, "request cancelled")
                self._kick()
            raise
        except Exception as exc:
            if self._write_paused:
                await self._wait_writable()
            if self._in_flight.pop(request_id, _GONE) is not _GONE:
                conn.send_outcome(request_id, exception=exc)
                self._kick()
        else:
            if self._write_paused:
                await self._wait_writable()
            if self._in_flight.pop(request_id, _GONE) is not _GONE:
                conn.send_outcome(request_id, result=result)
                self._kick()

    def _on_notification(self, event: NotificationReceived) -> None:
        handler = self._notification_handlers.get(event.method)
        if handler is None:
            logger.debug("notification %r has no handler: dropped", event.method)
            return
        self._notifications.append((handler, event.method, event.data))
        if self._notifier is None or self._notifier.done():
            self._notifier = self._spawn(self._deliver_notifications())

    async def _deliver_notifications(self) -> None:
        # One task at a time delivers the notifications, in order; it ends when none wait.
        queue = self._notifications
        while queue:
            handler, method, data = queue.pop(0)
            if len(queue) == MAX_QUEUED_NOTIFICATIONS - 1:
                self._kick()  # under the bound again: the pump resumes reading
            try:
                await handler(data)
            except Exception:
                logger.exception("handler of notification %r failed", method)

    def _on_cancel_requested(self, event: CancelRequested) -> None:
        # The connection already answered -32800: stop the handler.
        task = self._in_flight.pop(event.request_id, None)
        if task is not None:
            task.cancel()

    def _on_pong(self, event: PongReceived) -> None:
        future = self._pings.pop(event.ping_id, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    def _log_event(self, event: Event) -> None:
        log_event(logger, event)

    # -- internal: the handshake ---------------------------------------------------------

    def _on_upgrade_requested(self, event: UpgradeRequested) -> None:
        hook = self._on_upgrade
        if hook is None:
            self._decide(None)
            return
        try:
            decision = hook(event, self._remote_address)
        except Exception:
            logger.exception(
                "on_upgrade failed; rejecting the upgrade from %r with 500", self._remote_address
            )
            decision = Reject(status_code=500)
        if inspect.isawaitable(decision):
            self._spawn(self._await_decision(decision))
        else:
            self._decide(decision)

    async def _await_decision(self, pending: Awaitable[Decision]) -> None:
        try:
            decision = await pending
        except Exception:
            logger.exception(
                "on_upgrade failed; rejecting the upgrade from %r with 500", self._remote_address
            )
            decision = Reject(status_code=500)
        self._decide(decision)

    def _decide(self, decision: object) -> None:
        if self._conn.state is not State.UPGRADE_REQUESTED:
            return  # the handshake timed out or the client left while the hook ran
        self._conn.decide(decision, now=self._loop.time())
        if not self.closed and self._on_open is not None:
            self._on_open(self)
        self._pump()

    def _on_handshake_accepted(self, event: HandshakeAccepted) -> None:
        if not self._handshake_done.done():
            self._handshake_done.set_result(None)

    def _on_upgrade_rejected(self, event: UpgradeRejected) -> None:
        self._handshake_error = HandshakeRejected(event.status_code, event.headers, event.body)

    def _on_closed(self, event: ConnectionClosed) -> None:
        if not self._handshake_done.done():
            if self._handshake_error is None:
                self._handshake_error = HandshakeError(event.reason)
            self._handshake_done.set_result(None)
        # The connection has ended every request with `RequestAborted` already; pings have
        # no such event.
        pings, self._pings = self._pings, {}
        for ping in pings.values():
            if not ping.done():
                ping.set_exception(SessionClosed(event.code, event.reason))
        self._wake_writers()
        self._cancel_tasks(grace=True)
