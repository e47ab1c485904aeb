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
same read as the handshake (the 101 and a `welcome` notification, say). The connection
types messages as it parses them, so the session feeds it only up to the end of the HTTP
head and holds the rest (and reads nothing more) until the user had one turn of the loop
to register handlers: the `async with connect(...)` body, or `on_session`, up to its first
`await`. session-rs makes the same point explicit with `session.start_receiver()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeAlias, TypeVar, cast, overload

from session_core import (
    Accept,
    CancelRequested,
    Connection,
    ConnectionClosed,
    ErrorCode,
    ErrorResponseReceived,
    Event,
    HandshakeAccepted,
    HandshakeError,
    HandshakeRejected,
    InvalidMessageReceived,
    InvalidResponseReceived,
    LocalProtocolError,
    Method,
    NotificationReceived,
    PongReceived,
    Reject,
    RequestAborted,
    RequestReceived,
    RequestRejected,
    RequestTimedOut,
    ResponseReceived,
    Role,
    SessionClosed,
    State,
    UnexpectedResponseReceived,
    UpgradeRejected,
    UpgradeRequested,
    result_of,
)
from session_core._events import Headers

__all__ = ["NotificationHandler", "RequestHandler", "Session", "UpgradeHook"]

logger = logging.getLogger("session_asyncio")

Req = TypeVar("Req")
Resp = TypeVar("Resp")

RequestHandler: TypeAlias = Callable[[Req], Awaitable[Resp]]
"""`async def handler(data: Req) -> Resp`: serves one method's requests."""
NotificationHandler: TypeAlias = Callable[[Req], Awaitable[None]]
"""`async def handler(data: Req) -> None`: receives one method's notifications."""
Decision: TypeAlias = Accept | Reject | None
UpgradeHook: TypeAlias = Callable[[UpgradeRequested, Any], Decision | Awaitable[Decision]]
"""`on_upgrade(request, remote_address)`, sync or async: `Accept`, `Reject` or `None` (accept)."""

# How many bytes sent from tasks may wait for the scheduled pump before one is forced: it
# bounds what bypasses write flow control when a task sends in a loop without yielding.
# (asyncio's default high-water mark.)
_MAX_UNFLUSHED = 64 * 1024
# How far to read into the stream to find the end of the HTTP head before giving up.
_MAX_HEAD = 64 * 1024
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


class Session:
    """One end of a session: send requests and notifications, serve the peer's.

    Sessions come from `session_asyncio.connect()` (client) and from the `on_session`
    callback of `session_asyncio.serve()` (server); do not build one yourself. Both ends
    are equal: each can call the other's methods.

    Register handlers before the first `await` after the session is handed to you (in the
    `async with connect(...)` body, or at the top of `on_session`): the session holds what
    the peer sends until then, so that no early message misses its handler.
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
        # Our requests and pings waiting for their outcome.
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._pings: dict[int, asyncio.Future[float]] = {}
        # Handlers: by method name, then the tasks running them.
        self._request_handlers: dict[str, RequestHandler[Any, Any]] = {}
        self._notification_handlers: dict[str, NotificationHandler[Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight: dict[int, asyncio.Task[Any] | None] = {}
        # The handshake (client) and the end.
        self._opened: asyncio.Future[None] | None = None
        if conn.role is Role.CLIENT:
            self._opened = loop.create_future()
        self._close_event: ConnectionClosed | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        # Transport state.
        self._can_write = False
        self._write_paused = False
        self._writers: list[asyncio.Future[None]] = []
        self._reading_paused = False
        self._abort_handle: asyncio.TimerHandle | None = None
        # Input held back by the adapter: the stream is fed to the connection only up to
        # the end of the HTTP head, then held until the user could register handlers.
        self._head: bytearray | None = bytearray()
        self._held: list[bytes] | None = None
        # The pump.
        self._pumping = False
        self._flush_scheduled = False
        self._unflushed: list[bytes] = []
        self._unflushed_size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        outcome = self._on_outcome
        self._event_handlers: dict[type[Event], Callable[[Any], None]] = {
            ResponseReceived: self._on_response,
            RequestReceived: self._on_request,
            NotificationReceived: self._on_notification,
            ErrorResponseReceived: outcome,
            InvalidResponseReceived: outcome,
            RequestTimedOut: outcome,
            RequestAborted: outcome,
            CancelRequested: self._on_cancel_requested,
            PongReceived: self._on_pong,
            RequestRejected: self._on_request_rejected,
            UnexpectedResponseReceived: self._on_unexpected_response,
            InvalidMessageReceived: self._on_invalid_message,
            UpgradeRequested: self._on_upgrade_requested,
            HandshakeAccepted: self._on_handshake_accepted,
            UpgradeRejected: self._on_upgrade_rejected,
            ConnectionClosed: self._on_closed,
        }

    # -- properties ------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The request target of the handshake, such as `/chat?room=1`."""
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
        """The peer's address, as the transport gives it (`(host, port)` for TCP)."""
        return self._remote_address

    @property
    def closed(self) -> bool:
        """True once the session has ended (the close handshake is over, or the link lost)."""
        return self._close_event is not None

    @property
    def close_code(self) -> int | None:
        """The close code that ended the session (`None` while it lasts).

        1005 is a close frame without a code (as session-rs closes), 1006 a connection lost
        without any close frame.
        """
        return None if self._close_event is None else self._close_event.code

    @property
    def close_reason(self) -> str | None:
        """The close reason that ended the session (`None` while it lasts)."""
        return None if self._close_event is None else self._close_event.reason

    # -- handlers --------------------------------------------------------------------

    @overload
    def on_request(
        self, method: Method[Req, Resp, Any], handler: None = None
    ) -> Callable[[RequestHandler[Req, Resp]], RequestHandler[Req, Resp]]: ...
    @overload
    def on_request(
        self, method: Method[Req, Resp, Any], handler: RequestHandler[Req, Resp]
    ) -> RequestHandler[Req, Resp]: ...
    def on_request(
        self, method: Method[Req, Resp, Any], handler: RequestHandler[Req, Resp] | None = None
    ) -> RequestHandler[Req, Resp] | Callable[[RequestHandler[Req, Resp]], RequestHandler[Req, Resp]]:
        """Serve `method`: `async def handler(data) -> response` answers each request.

        Use it as a decorator (`@session.on_request(add)`) or call it with the handler. The
        handler runs in its own task, concurrently with others (up to
        `Config.max_incoming_requests` at once). Raise `MethodError(value)` to answer with
        an error value of the method's error type; any other exception answers -32603 and
        is logged. A handler registered again for the same method replaces the first.
        Requests for methods with no handler are answered -32601 by the session.

        Args:
            method: the method to serve; its requests arrive as its request type.
            handler: the handler; omit it to get a decorator.

        Returns:
            The handler (or a decorator that registers its argument and returns it).
        """

        def register(handler: RequestHandler[Req, Resp]) -> RequestHandler[Req, Resp]:
            self._conn.add_method(method)
            self._request_handlers[method.name] = handler
            return handler

        return register if handler is None else register(handler)

    @overload
    def on_notification(
        self, method: Method[Req, Any, Any], handler: None = None
    ) -> Callable[[NotificationHandler[Req]], NotificationHandler[Req]]: ...
    @overload
    def on_notification(
        self, method: Method[Req, Any, Any], handler: NotificationHandler[Req]
    ) -> NotificationHandler[Req]: ...
    def on_notification(
        self, method: Method[Req, Any, Any], handler: NotificationHandler[Req] | None = None
    ) -> NotificationHandler[Req] | Callable[[NotificationHandler[Req]], NotificationHandler[Req]]:
        """Receive `method`'s notifications with `async def handler(data) -> None`.

        Use it as a decorator or call it with the handler. Each notification runs the
        handler in its own task; an exception is logged and the session goes on.
        Notifications with no handler are logged at debug level and dropped.

        Args:
            method: the method whose notifications to receive (data of its request type).
            handler: the handler; omit it to get a decorator.

        Returns:
            The handler (or a decorator that registers its argument and returns it).
        """

        def register(handler: NotificationHandler[Req]) -> NotificationHandler[Req]:
            self._conn.add_method(method, requests=False)
            self._notification_handlers[method.name] = handler
            return handler

        return register if handler is None else register(handler)

    # -- commands --------------------------------------------------------------------

    @overload
    async def request(
        self, method: Method[Req, Resp, Any], data: Req, *, timeout: float | None = None
    ) -> Resp: ...
    @overload
    async def request(self, method: str, data: Any, *, timeout: float | None = None) -> Any: ...
    async def request(
        self, method: Method[Any, Any, Any] | str, data: Any, *, timeout: float | None = None
    ) -> Any:
        """Call `method` on the peer and return its response.

        Args:
            method: a `Method` (typed: `data` and the result have its types), or a method
                name (raw JSON in and out).
            data: the request data.
            timeout: seconds to wait for the answer (default `Config.request_timeout`,
                none by default); on expiry the peer gets `$/cancel`.

        Returns:
            The response, converted to the method's response type.

        Raises:
            RemoteError: the peer answered with an error response (`error` holds the
                value, of the method's error type); a `RemoteProtocolError` subclass
                (`MethodNotFound`, `InvalidRequestData`, `InternalError`,
                `RequestCancelled`) for a protocol error object.
            InvalidResponse: the answer does not fit the method's types.
            TimeoutError: no answer in time.
            SessionClosed: the session ended (or was already closed) first.
            EncodingError: `data` cannot be sent.
            TooManyPendingRequests: `Config.max_pending_requests` is reached.

        Cancelling the awaiting task gives the request up: the peer gets `$/cancel`.
        """
        if self._write_paused:
            await self._wait_writable()
        loop = self._loop
        request_id = self._conn.send_request(method, data, now=loop.time(), timeout=timeout)
        future: asyncio.Future[Any] = loop.create_future()
        self._waiters[request_id] = future
        self._kick()
        try:
            return await future
        except asyncio.CancelledError:
            if self._waiters.pop(request_id, None) is not None:
                if self._conn.cancel_request(request_id):
                    self._kick()
            elif future.done() and not future.cancelled():
                future.exception()  # the outcome lost the race: mark it retrieved
            raise

    async def notify(self, method: Method[Req, Any, Any] | str, data: Req) -> None:
        """Send a notification (never answered).

        Waits while the transport's write buffer is full (write flow control).

        Args:
            method: a `Method` (data of its request type) or a method name (raw JSON).
            data: the notification data.

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
            The round-trip time in seconds.

        Raises:
            SessionClosed: the session ended before the pong arrived.
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
            self._pings.pop(ping_id, None)
            raise

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session and wait until it has ended.

        Starts the close handshake (the peer's close frame is awaited at most
        `Config.close_timeout`), fails the requests still waiting with `SessionClosed`,
        cancels the running handlers and waits for them. Closing a closed session does
        nothing.

        Args:
            code: the close code (1000 a normal end; 3000-4999 for applications).
            reason: a short text (at most 123 bytes of UTF-8).
        """
        self._start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the session has ended and its handler tasks are finished."""
        if not self._lost.done():
            await asyncio.wait((self._lost,))
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        if tasks:
            await asyncio.wait(tasks)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Session {self._conn.role.value} {self._conn.state.value} remote={self._remote_address!r}>"

    # -- internal: commands -----------------------------------------------------------

    def _start_close(self, code: int, reason: str) -> None:
        self._conn.close(code, reason, now=self._loop.time())
        self._cancel_tasks()
        self._pump()

    def _abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        if self._transport is not None and self._can_write:
            self._can_write = False
            self._transport.abort()
        self._conn.close(1000, now=self._loop.time())  # ends a connection still in its handshake
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

    def _cancel_tasks(self) -> None:
        # The answers of handlers still running would be dropped: stop them.
        self._in_flight.clear()
        current = asyncio.current_task(self._loop)
        for task in self._tasks:
            if task is not current:
                task.cancel()

    def _task_done(self) -> None:
        self._tasks.discard(asyncio.current_task())
        if self._on_finished is not None and not self._tasks:
            self._check_finished()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        if not task.done():  # an eager task factory may have run it to its end already
            self._tasks.add(task)
        return task

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
                    handlers.get(type(event), self._on_other_event)(event)
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
                    paused = conn.reading_paused or self._held is not None
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
        held = self._held
        if held is not None:
            held.append(data)
            return
        if self._head is not None:
            self._receive_head(data)
            return
        self._conn.receive_data(data, self._loop.time())
        self._pump()

    def _receive_head(self, data: bytes) -> None:
        # Feed the connection the HTTP head only: what follows it waits in `_held` until
        # the user could register handlers (see the module's docstring).
        head = self._head
        assert head is not None
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        conn = self._conn
        if end < 0:
            if len(head) > _MAX_HEAD:
                self._head = None  # not HTTP as we know it: let the connection judge
            conn.receive_data(data, self._loop.time())
            self._pump()
            return
        self._head = None
        split = end + 4 - (len(head) - len(data))
        rest = data[split:]
        self._held = [rest] if rest else []
        conn.receive_data(data[:split], self._loop.time())
        self._pump()
        state = conn.state
        if state is State.HANDSHAKING:  # a rejection whose body follows the head
            self._release()
        elif state is State.CLOSED:
            self._held = None

    def _release(self) -> None:
        """Feed the input held since the handshake (handlers are registered by now)."""
        held = self._held
        if held is None:
            return
        self._held = None
        if len(held) == 1:
            self._conn.receive_data(held[0], self._loop.time())
        elif held:
            self._conn.receive_data(b"".join(held), self._loop.time())
        self._pump()

    def _eof_received(self) -> None:
        self._release()
        self._conn.receive_eof()
        self._pump()

    def _connection_lost(self) -> None:
        self._can_write = False
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        self._held = None
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

    def _on_response(self, event: ResponseReceived) -> None:
        future = self._waiters.pop(event.request_id, None)
        if future is not None and not future.done():
            future.set_result(event.result)

    def _on_outcome(
        self, event: ErrorResponseReceived | InvalidResponseReceived | RequestTimedOut | RequestAborted
    ) -> None:
        future = self._waiters.pop(event.request_id, None)
        if future is None or future.done():
            return
        try:
            future.set_result(result_of(event))
        except Exception as exc:
            future.set_exception(exc)

    def _on_request(self, event: RequestReceived) -> None:
        request_id = event.request_id
        handler = self._request_handlers.get(event.method)
        if handler is None:
            # An untyped connection (no request handler registered at all) lets every
            # request through: answer it as the typed one would have.
            self._conn.send_protocol_error(
                request_id, ErrorCode.METHOD_NOT_FOUND, f"method not found: {event.method}"
            )
            return
        self._in_flight[request_id] = None
        task = self._spawn(self._serve_request(request_id, handler, event.data))
        if request_id in self._in_flight:
            self._in_flight[request_id] = task

    async def _serve_request(self, request_id: int, handler: RequestHandler[Any, Any], data: Any) -> None:
        conn = self._conn
        try:
            try:
                result = await handler(data)
            except asyncio.CancelledError:
                if self._in_flight.pop(request_id, _GONE) is not _GONE and conn.state is State.OPEN:
                    # Cancelled by neither the peer's `$/cancel` nor the session's end (both
                    # take the request out of `_in_flight` first): it still needs an answer.
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
        finally:
            self._task_done()

    def _on_notification(self, event: NotificationReceived) -> None:
        handler = self._notification_handlers.get(event.method)
        if handler is None:
            logger.debug("notification %r has no handler: dropped", event.method)
            return
        self._spawn(self._serve_notification(event.method, handler, event.data))

    async def _serve_notification(self, method: str, handler: NotificationHandler[Any], data: Any) -> None:
        try:
            await handler(data)
        except Exception:
            logger.exception("handler of notification %r failed", method)
        finally:
            self._task_done()

    def _on_cancel_requested(self, event: CancelRequested) -> None:
        # The connection already answered -32800: stop the handler.
        task = self._in_flight.pop(event.request_id, None)
        if task is not None:
            task.cancel()

    def _on_pong(self, event: PongReceived) -> None:
        future = self._pings.pop(event.ping_id, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    def _on_request_rejected(self, event: RequestRejected) -> None:
        logger.debug("request %d (%s) rejected: %s", event.request_id, event.method, event.message)

    def _on_unexpected_response(self, event: UnexpectedResponseReceived) -> None:
        if event.reason == "unknown id":
            logger.warning("answer to unknown request id %d ignored", event.request_id)
        else:  # a late answer to a request we gave up: routine
            logger.debug("late answer to request %d (%s) ignored", event.request_id, event.reason)

    def _on_invalid_message(self, event: InvalidMessageReceived) -> None:
        logger.warning("invalid message ignored: %s", event.reason)

    def _on_other_event(self, event: Event) -> None:  # pragma: no cover - a newer core
        logger.debug("event ignored: %r", event)

    # -- internal: the handshake ---------------------------------------------------------

    def _on_upgrade_requested(self, event: UpgradeRequested) -> None:
        hook = self._on_upgrade
        if hook is None:
            self._decide(None)
            return
        try:
            decision = hook(event, self._remote_address)
        except Exception:
            logger.exception("on_upgrade failed; rejecting the upgrade")
            decision = Reject(status_code=500)
        if inspect.isawaitable(decision):
            self._spawn(self._await_decision(decision))
        else:
            self._decide(decision)

    async def _await_decision(self, pending: Awaitable[Decision]) -> None:
        try:
            try:
                decision = await pending
            except Exception:
                logger.exception("on_upgrade failed; rejecting the upgrade")
                decision = Reject(status_code=500)
            self._decide(decision)
        finally:
            self._task_done()

    def _decide(self, decision: Decision) -> None:
        conn = self._conn
        if conn.state is not State.UPGRADE_REQUESTED:
            return  # the handshake timed out or the client left while the hook ran
        try:
            conn.decide(decision, now=self._loop.time())
        except LocalProtocolError:
            logger.exception("on_upgrade gave an invalid decision; rejecting the upgrade")
            conn.reject(500)
        if self._conn.state is State.OPEN and self._on_open is not None:  # (mypy narrowed conn.state)
            self._on_open(self)
        self._pump()

    def _on_handshake_accepted(self, event: HandshakeAccepted) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_result(None)

    def _on_upgrade_rejected(self, event: UpgradeRejected) -> None:
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(HandshakeRejected(event.status_code, event.headers, event.body))

    def _on_closed(self, event: ConnectionClosed) -> None:
        self._close_event = event
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(HandshakeError(event.reason))
        closed = SessionClosed(event.code, event.reason)
        # The connection aborted every pending request already; this is only a safety net.
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(closed)
        pings, self._pings = self._pings, {}
        for ping in pings.values():
            if not ping.done():
                ping.set_exception(closed)
        self._wake_writers()
        self._cancel_tasks()
