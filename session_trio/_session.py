"""`Session`: one session over a trio stream, driving a `session_core.Connection`.

Everything that is protocol happens in the connection. A session runs three tasks, in a
nursery of its own, and moves bytes, wakes tasks and schedules the timer:

- the reader feeds what it reads (64 KiB at a time) to the connection, then pumps; it
  stops reading while the connection says `reading_paused` (TCP back-pressure);
- the writer writes what the pumps collected, one write per batch, and closes the
  transport when the connection says so. A write is shielded, so a cancellation never
  tears a frame; it is bounded (`TEARDOWN_GRACE`) only once the session is being torn
  down or the connection is over;
- the timer task sleeps until `Connection.get_timer()` in a cancel scope whose deadline
  every pump moves, and calls `handle_timer`.

Handlers run in the same nursery: each request's in a task of its own, and notifications
one at a time, in arrival order, in one task that runs while any wait. At most
`MAX_QUEUED_NOTIFICATIONS` wait: at the bound the reader stops, as it does while the
connection says `reading_paused`. When the connection is over, the request handlers are
cancelled (their answers can no longer go out), while the notifications received before
the end still reach their handlers, for at most `TEARDOWN_GRACE`.

The pump, after every input or call: drain the events and act on them, hand the bytes to
the writer, re-arm the timer, and wake the reader if it waited for `reading_paused` to end.

On plain sockets (not TLS) two shortcuts save trio scheduling steps, which dominate the
cost of a small message: a pump writes its bytes at once, synchronously and without
blocking, when the writer is idle (the writer task gets only what the socket refused), and
the reader reads the file descriptor directly after `wait_readable`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from types import TracebackType
from typing import Any, TypeVar, overload

import trio

from session_core import (
    OUTCOMES,
    CancelRequested,
    Connection,
    ConnectionClosed,
    Event,
    HandshakeAccepted,
    HandshakeError,
    HandshakeRejected,
    Method,
    NotificationReceived,
    PongReceived,
    RequestReceived,
    SessionClosed,
    State,
    UpgradeRejected,
    UpgradeRequested,
    log_event,
    result_of,
)
from session_core._sessionbase import NotificationHandler, RequestHandler, SessionBase

logger = logging.getLogger("session_trio")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


#: How much to read at once.
READ_SIZE = 64 * 1024
#: Notifications received and not yet handed to their handler, at most; at the bound the
#: reader stops (what it read last may take the queue one read past it).
MAX_QUEUED_NOTIFICATIONS = 128
#: Seconds a session being torn down spends on its last write and its close, and that the
#: notifications received before the end have to reach their handlers.
TEARDOWN_GRACE = 1.0
#: The code a session sends when it is cancelled while open (RFC 6455 7.4.1, "going away").
GOING_AWAY = 1001


class _Waiter:
    """A task parked until an event of the connection answers it."""

    __slots__ = ("error", "task", "value")

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self.value: Any = None
        self.error: BaseException | None = None

    def wake(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        trio.lowlevel.reschedule(self.task)


class Session(SessionBase):
    """One end of a session: make requests, send notifications, serve methods.

    Sessions come from `session_trio.connect` (client) and `session_trio.serve` (server);
    do not build one yourself. Register handlers with `on_request` and `on_notification`
    before your first `await` on a new session: the session processes no message before
    that, so nothing that arrives first is missed.

    Closing: leave `async with session`, or call `close()`. When the session ends, every
    `request()` still waiting fails at once with `SessionClosed` and the request handlers
    are cancelled; the notifications received before the end still reach their handlers,
    for at most `TEARDOWN_GRACE` seconds.
    """

    def __init__(self, conn: Connection, stream: trio.abc.Stream, remote_address: Any) -> None:
        self._conn = conn
        self._stream = stream
        # Plain sockets are read and written through their file descriptor (see `_receive`
        # and `_flush`); TLS and other streams through the stream's own methods.
        self._fd: int | None = None
        if isinstance(stream, trio.SocketStream) and os.name == "posix":
            self._fd = stream.socket.fileno()
        self._remote_address = remote_address
        self._nursery: trio.Nursery | None = None
        self._request_handlers: dict[str, RequestHandler[Any, Any]] = {}
        self._notification_handlers: dict[str, NotificationHandler[Any]] = {}
        self._handler_scopes: dict[int, trio.CancelScope] = {}
        # Notifications waiting for their handler, and whether a task delivers them (in
        # `_notify_scope`, once it has started).
        self._notifications: list[tuple[NotificationHandler[Any], str, Any]] = []
        self._notifying = False
        self._notify_scope: trio.CancelScope | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._ping_waiters: dict[int, _Waiter] = {}
        # The writer.
        self._outbox: list[bytes] = []
        self._write_lot = trio.lowlevel.ParkingLot()
        self._drain_lot = trio.lowlevel.ParkingLot()
        self._write_scope: trio.CancelScope | None = None
        self._broken = False
        self._transport_closed = False
        # The reader.
        self._read_lot = trio.lowlevel.ParkingLot()
        self._reading = trio.Event()
        # The timer.
        self._deadline = math.inf
        self._timer_scope = trio.CancelScope()
        # The handshake and the end.
        self._handshake_done = trio.Event()
        self._handshake_error: HandshakeError | None = None
        self._upgrade: UpgradeRequested | None = None
        self._teardown_deadline = math.inf  # set once the session's tasks are being ended
        self._closed = trio.Event()  # the transport is closed and every task has ended

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
            TimeoutError: the builtin one (not `trio.TooSlowError`): no answer within
                `timeout`; the peer was sent `$/cancel`.
            SessionClosed: the session ended before the answer, or had ended already.
            EncodingError: `data` cannot be sent.
            TooManyPendingRequests: `Config.max_pending_requests` requests already wait.

        Cancelling the calling task gives the request up: the peer is sent `$/cancel`.
        """
        conn = self._conn
        request_id = conn.send_request(method, data, now=trio.current_time(), timeout=timeout)
        waiter = self._waiters[request_id] = _Waiter()
        self._pump()

        def abort(_: Any) -> trio.lowlevel.Abort:
            # Runs synchronously when the task is cancelled, never after `wake`.
            del self._waiters[request_id]
            conn.cancel_request(request_id)  # makes no events: only `$/cancel` to send
            self._flush()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if waiter.error is not None:
            raise waiter.error
        return result_of(waiter.value)

    @overload
    async def notify(self, method: Method[Req, Any, Any], data: Req) -> None: ...
    @overload
    async def notify(self, method: str, data: Any) -> None: ...
    async def notify(self, method: Method[Any, Any, Any] | str, data: Any) -> None:
        """Send a notification (never answered).

        Returns once the notification is queued; while an earlier write is still in
        progress it waits for that write, so that a fast sender cannot outrun the socket.

        Raises:
            SessionClosed: the session is closing or closed.
            EncodingError: `data` cannot be sent.
        """
        self._conn.send_notification(method, data)
        self._pump()
        if self._write_scope is not None:
            await self._drain_lot.park()
        else:
            await trio.lowlevel.checkpoint()

    async def ping(self) -> float:
        """Send a ping and wait for its pong.

        Returns:
            The round-trip time, in seconds.

        Raises:
            SessionClosed: the session is closing or closed, or ended before the pong.
        """
        ping_id = self._conn.send_ping()
        sent_at = trio.current_time()
        waiter = self._ping_waiters[ping_id] = _Waiter()
        self._flush()

        def abort(_: Any) -> trio.lowlevel.Abort:
            del self._ping_waiters[ping_id]
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if waiter.error is not None:
            raise waiter.error
        return float(waiter.value) - sent_at

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
        self._conn.close(code, reason, now=trio.current_time())
        self._pump()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the session has ended, its transport is closed and its handlers are done.

        Called from one of the session's own handlers (which cannot wait for itself), it
        waits for the end of the connection only.
        """
        nursery = self._nursery
        if nursery is not None and trio.lowlevel.current_task().parent_nursery is nursery:
            while not self._transport_closed:  # `_close_transport` unparks the drain lot
                await self._drain_lot.park()
        else:
            await self._closed.wait()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Session {self._conn.role.value} {self._conn.state.value} {self._remote_address!r}>"

    # -- running (for connect and serve) ---------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session's tasks until its connection is closed, then tidy up.

        When cancelled while open (server shutdown, a client leaving `connect` with an
        exception), it sends a close frame with 1001 on a best-effort basis.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._pump()  # a client's upgrade request is waiting, and the first timer
                nursery.start_soon(self._read_loop)
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._timer_loop)
                task_status.started()
        finally:
            self._nursery = None
            try:
                await self._finish()
            finally:
                self._closed.set()  # the transport is closed and every handler is done

    async def _wait_handshake(self) -> None:
        """Wait for the handshake to succeed; raise `HandshakeError` if it failed."""
        await self._handshake_done.wait()
        if self._handshake_error is not None:
            raise self._handshake_error

    async def _wait_upgrade(self) -> UpgradeRequested | None:
        """Server: the client's upgrade request, or `None` if the connection ended first."""
        await self._handshake_done.wait()
        return self._upgrade if self._conn.state is State.UPGRADE_REQUESTED else None

    def _decide(self, decision: object) -> None:
        """Server: apply the upgrade hook's decision (`None` accepts)."""
        self._conn.decide(decision, now=trio.current_time())
        self._pump()

    def _start_reading(self) -> None:
        """Let the reader deliver messages: the user has had the chance to add handlers.

        The reader calls `Connection.start()` when it next runs. For a client, that is
        after the body of `async with connect(...)` first yields to trio; a server calls
        this once `on_session`'s first step is over (see `after_first_step`).
        """
        self._reading.set()

    # -- the pump --------------------------------------------------------------------

    def _pump(self) -> None:
        conn = self._conn
        events = conn.events()
        while events:
            for event in events:
                self._handle(event)
            events = conn.events()  # answering may resume held input
        self._flush()
        timer = conn.get_timer()
        deadline = math.inf if timer is None else timer
        if deadline != self._deadline:
            self._deadline = self._timer_scope.deadline = deadline
        if self._read_lot and not self._reading_blocked():
            self._read_lot.unpark_all()

    def _reading_blocked(self) -> bool:
        return self._conn.reading_paused or len(self._notifications) >= MAX_QUEUED_NOTIFICATIONS

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            fd = self._fd
            if fd is not None and not (self._outbox or self._write_scope or self._transport_closed):
                # Fast path: the writer is idle, so write now what the socket takes without
                # blocking, and leave only the rest to the writer task. Nothing is ever
                # half-written by a cancellation: this write is synchronous.
                try:
                    sent = os.write(fd, data)
                except OSError:  # would block, or broken: the writer's send_all tells which
                    sent = 0
                data = data[sent:]
            if data:
                self._outbox.append(data)
                self._write_lot.unpark_all()
        if self._conn.should_close_transport:
            # The connection is over: a write still blocked (the peer reads no more) gets a
            # short grace, not forever.
            scope = self._write_scope
            if scope is not None and scope.deadline == math.inf:
                scope.deadline = trio.current_time() + TEARDOWN_GRACE
            self._write_lot.unpark_all()

    def _handle(self, event: Event) -> None:
        if isinstance(event, OUTCOMES):
            waiter = self._waiters.pop(event.request_id, None)
            if waiter is not None:
                waiter.wake(event)
        elif isinstance(event, RequestReceived):
            self._handle_request(event)
        elif isinstance(event, NotificationReceived):
            self._handle_notification(event)
        elif isinstance(event, CancelRequested):
            scope = self._handler_scopes.get(event.request_id)
            if scope is not None:
                scope.cancel()
        elif isinstance(event, PongReceived):
            waiter = self._ping_waiters.pop(event.ping_id, None)
            if waiter is not None:
                waiter.wake(trio.current_time())
        elif isinstance(event, HandshakeAccepted):
            self._handshake_done.set()
        elif isinstance(event, UpgradeRequested):
            self._upgrade = event
            self._handshake_done.set()
        elif isinstance(event, UpgradeRejected):
            self._handshake_error = HandshakeRejected(event.status_code, event.headers, event.body)
        elif isinstance(event, ConnectionClosed):
            self._handle_closed(event)
        else:
            self._log_event(event)

    def _log_event(self, event: Event) -> None:
        log_event(logger, event)

    def _handle_request(self, event: RequestReceived) -> None:
        # The connection is typed (built with `methods=()`): only registered methods get
        # here, and only while the session's tasks run.
        handler = self._request_handlers[event.method]
        assert self._nursery is not None
        # The scope exists before the task starts, so that a `$/cancel` arriving in the
        # same read cancels the handler before it runs.
        scope = self._handler_scopes[event.request_id] = trio.CancelScope()
        self._nursery.start_soon(self._answer, handler, event.request_id, event.data, scope)

    async def _answer(
        self, handler: RequestHandler[Any, Any], request_id: int, data: Any, scope: trio.CancelScope
    ) -> None:
        result: Any = None
        error: Exception | None = None
        try:
            with scope:
                try:
                    result = await handler(data)
                except Exception as exc:
                    error = exc
                # Write flow control: while a write waits for the socket, the answer waits
                # too, and keeps its request in flight, so that a peer that reads nothing
                # meets the bound on requests (the reader stops) instead of a growing outbox.
                while self._write_scope is not None:
                    await self._drain_lot.park()
        finally:
            # After a `$/cancel` the peer may reuse the id while this handler still runs.
            if self._handler_scopes.get(request_id) is scope:
                del self._handler_scopes[request_id]
        if scope.cancelled_caught:
            return  # the peer cancelled (the connection has answered -32800), or the end
        self._conn.send_outcome(request_id, result=result, exception=error)
        self._pump()

    def _handle_notification(self, event: NotificationReceived) -> None:
        handler = self._notification_handlers.get(event.method)
        if handler is None:
            logger.debug("notification %r has no handler: dropped", event.method)
            return
        self._notifications.append((handler, event.method, event.data))
        if not self._notifying:
            assert self._nursery is not None  # messages arrive only while the tasks run
            self._notifying = True
            self._nursery.start_soon(self._deliver_notifications)

    async def _deliver_notifications(self) -> None:
        # One task at a time delivers the notifications, in order; it ends when none wait.
        # Shielded: when the session's tasks are ended, the notifications received before
        # still reach their handlers, until the teardown deadline (see `_timer_loop`).
        queue = self._notifications
        try:
            with trio.CancelScope(shield=True, deadline=self._teardown_deadline) as self._notify_scope:
                while queue:
                    handler, method, data = queue.pop(0)
                    if len(queue) == MAX_QUEUED_NOTIFICATIONS - 1:
                        self._read_lot.unpark_all()  # under the bound again
                    try:
                        await handler(data)
                    except Exception:
                        logger.exception("handler of notification %r failed", method)
        finally:
            self._notifying = False
            self._notify_scope = None

    def _handle_closed(self, event: ConnectionClosed) -> None:
        if not self._handshake_done.is_set():
            if self._handshake_error is None:
                self._handshake_error = HandshakeError(event.reason)
            self._handshake_done.set()
        # The connection has ended every request with `RequestAborted` already; pings
        # have no such event.
        for waiter in self._ping_waiters.values():
            waiter.wake(error=SessionClosed(event.code, event.reason))
        self._ping_waiters.clear()

    # -- the tasks -------------------------------------------------------------------

    async def _receive(self) -> bytes:
        fd = self._fd
        if fd is None:
            data = await self._stream.receive_some(READ_SIZE)
            return data if type(data) is bytes else bytes(data)
        # Fast path for plain sockets: `receive_some` adds a schedule point after every
        # successful read; here a read that had to wait returns at once, and one that did
        # not wait yields once (so that a flooding peer cannot starve other tasks).
        waited = False
        while True:
            if self._transport_closed:  # the fd number may belong to another file by now
                raise trio.ClosedResourceError
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                waited = True
                continue
            except OSError as exc:
                raise trio.BrokenResourceError from exc
            if not waited:
                await trio.lowlevel.checkpoint()
            return data

    async def _read_loop(self) -> None:
        conn = self._conn
        try:
            while conn.state is State.HANDSHAKING:
                data = await self._receive()
                if not data:
                    conn.receive_eof()
                    self._pump()
                    return
                conn.receive_data(data, trio.current_time())
                self._pump()
            if conn.state is not State.OPEN and conn.state is not State.UPGRADE_REQUESTED:
                return
            # The connection holds what followed the handshake (`wait_for_start`) until the
            # user has had the chance to register handlers; meanwhile nothing is read.
            await self._reading.wait()
            conn.start()
            self._pump()
            while not self.closed:
                if self._reading_blocked():
                    # Back-pressure: the peer's requests in flight, or the notifications
                    # waiting, are at their bound. An answer, or the delivery of a
                    # notification, unparks us when there is room.
                    await self._read_lot.park()
                    continue
                data = await self._receive()
                if not data:
                    conn.receive_eof()
                    self._pump()
                    return
                conn.receive_data(data, trio.current_time())
                self._pump()
        except trio.ClosedResourceError:
            pass  # the writer closed the transport
        except (trio.BrokenResourceError, OSError):
            conn.receive_eof()
            self._pump()

    async def _write_loop(self) -> None:
        conn, stream, outbox = self._conn, self._stream, self._outbox
        while not self._broken:
            if outbox:
                # Once the session is cancelled, `_finish` writes what is left.
                await trio.lowlevel.checkpoint_if_cancelled()
                data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                outbox.clear()
                await self._send(stream, data)
                self._drain_lot.unpark_all()
            elif conn.should_close_transport:
                break
            else:
                await self._write_lot.park()
        await self._close_transport()
        # The connection is over: end the reader, the timer and the handlers.
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> None:
        # Shielded: a torn frame would corrupt the stream for the close frame that follows.
        # Only `_timer_loop`, when the session is torn down, bounds it.
        with trio.CancelScope(shield=True) as scope:
            self._write_scope = scope
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self._broken = True
        self._write_scope = None
        if scope.cancelled_caught:
            self._broken = True
        if self._broken:
            self._conn.receive_eof()
            self._pump()

    async def _timer_loop(self) -> None:
        conn = self._conn
        try:
            while True:
                with trio.CancelScope(deadline=self._deadline) as scope:
                    self._timer_scope = scope
                    await trio.sleep_forever()
                # trio never fires a deadline early, so the current time is at or after it.
                conn.handle_timer(trio.current_time())
                self._pump()
        finally:
            # Reached only when the session's tasks are being ended (the connection is over,
            # or the session is cancelled): bound a write in progress, and the delivery of
            # the notifications received before the end.
            self._teardown_deadline = trio.current_time() + TEARDOWN_GRACE
            for shielded in (self._write_scope, self._notify_scope):
                if shielded is not None:
                    shielded.deadline = min(shielded.deadline, self._teardown_deadline)

    async def _close_transport(self) -> None:
        if not self._transport_closed:
            self._transport_closed = True
            with trio.move_on_after(TEARDOWN_GRACE, shield=True) as scope:
                await self._stream.aclose()
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self._stream)
        self._drain_lot.unpark_all()
        if self._conn.state is not State.CLOSED:
            self._conn.receive_eof()
            self._pump()

    async def _finish(self) -> None:
        # The tasks are gone. If the session was cancelled while open, say goodbye with
        # 1001 (best effort, bounded), then close the transport.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + TEARDOWN_GRACE):
            if not self._transport_closed and not self._broken:
                if self._conn.state is State.OPEN:
                    self._conn.close(GOING_AWAY, "going away", now=trio.current_time())
                self._pump()
                if self._outbox:
                    data = b"".join(self._outbox)
                    self._outbox.clear()
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        await self._stream.send_all(data)
            await self._close_transport()


def peer_address(stream: trio.abc.Stream) -> Any:
    """The peer's socket address under `stream` (through TLS), or `None`."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            return stream.socket.getpeername()
        except OSError:
            return None
    return None
