"""The driver layer: everything a session over real I/O does that is not I/O.

`Connection` is the protocol; a driver feeds it bytes and the time and acts on its events.
What every driver decides the same way lives here, once: how each event is acted on, how
a request waits for its answer and gives up, how a ping is timed, how handlers are
dispatched (requests concurrently, notifications one at a time in arrival order, a bounded
queue), how the opening handshake ends, what an upgrade hook may return, and what happens
when `on_session` raises. `session_trio` and `session_asyncio` are `SessionDriver`
subclasses that add only sockets, tasks and waiting; a third driver (a custom loop, a
command line) is built the same way.

Nothing here imports an event loop, a socket or a clock. `SessionDriver` has coroutines,
but they only ever await what its subclass's primitives return.

A subclass implements these primitives (see `SessionDriver` for their contracts):
`_now`, `_new_waiter`, `_park`, `_wake`, `_spawn`, `_spawn_notifier`, `_cancel`,
`_flush`, `_sent`, `_arm_timer`, `_write_blocked`, `_drained`, `_checkpoint`, `start`,
`wait_closed`, and may override `_session_ended`, `_clock` and `_begin`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import secrets
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeAlias, TypeVar, cast, overload

import attrs

# Reconnecting clients (the policy in _backoff, the loop in _reconnect) are exported here:
# what a reconnecting driver uses belongs with the rest of the driver layer.
from ._backoff import RETRIED_CLOSE_CODES, RETRIED_STATUS_CODES, Reconnector, should_retry
from ._config import Accept, Reject
from ._connection import Connection
from ._errors import (
    ErrorCode,
    HandshakeError,
    HandshakeRejected,
    InvalidResponse,
    LocalProtocolError,
    ProtocolErrorResponse,
    RemoteError,
    SessionClosed,
)
from ._events import (
    CancelRequested,
    ConnectionClosed,
    ErrorResponseReceived,
    Event,
    HandshakeAccepted,
    Headers,
    InvalidMessageReceived,
    InvalidResponseReceived,
    NotificationReceived,
    PongReceived,
    RequestAborted,
    RequestReceived,
    RequestRejected,
    RequestTimedOut,
    ResponseReceived,
    UnexpectedResponseReceived,
    UpgradeRejected,
    UpgradeRequested,
)
from ._methods import Method
from ._reconnect import Reconnecting, keep_connected
from ._server import ServerConnection
from ._state import State

if TYPE_CHECKING:
    # For `SessionDriver.hub`'s annotation only: the engine never imports the hub.
    from session_hub import Hub

__all__ = [
    "MAX_QUEUED_NOTIFICATIONS",
    "OUTCOMES",
    "RETRIED_CLOSE_CODES",
    "RETRIED_STATUS_CODES",
    "TEARDOWN_GRACE",
    "AnyNotificationHandler",
    "AnyRequestHandler",
    "Decision",
    "NotificationHandler",
    "Reconnecting",
    "Reconnector",
    "RequestHandler",
    "SessionDriver",
    "UpgradeHook",
    "WebSocketURL",
    "keep_connected",
    "log_event",
    "parse_url",
    "result_of",
    "serve_session",
    "should_retry",
    "upgrade_decision",
]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
W = TypeVar("W")
H = TypeVar("H")
S = TypeVar("S", bound="SessionDriver[Any, Any]")

RequestHandler: TypeAlias = Callable[[Req], Awaitable[Resp]]
"""`async def handler(data: Req) -> Resp`: serves one method's requests."""
NotificationHandler: TypeAlias = Callable[[Req], Awaitable[object]]
"""`async def handler(data: Req) -> None`: receives one method's notifications."""
AnyRequestHandler: TypeAlias = Callable[[RequestReceived], Awaitable[Any]]
"""`async def handler(request: RequestReceived) -> Any`: serves requests no handler of their
own serves; `request.method`, `request.data` (raw JSON) and `request.request_id`; the result
goes out as raw JSON."""
AnyNotificationHandler: TypeAlias = Callable[[NotificationReceived], Awaitable[object]]
"""`async def handler(notification: NotificationReceived) -> None`: receives notifications no
handler of their own receives; `notification.method` and `notification.data` (raw JSON)."""
Decision: TypeAlias = Accept | Reject | None
"""What an upgrade hook decides: `Accept(...)`, `Reject(...)`, or `None` (accept)."""
UpgradeHook: TypeAlias = Callable[[UpgradeRequested, Any], Decision | Awaitable[Decision]]
"""`on_upgrade(request, remote_address)`, sync or async: `Accept`, `Reject` or `None` (accept)."""


class SessionHub(Protocol):
    """What a session needs of a hub (`session_hub.Hub`, from `open_hub`).

    A protocol, so that the driver layer imports no hub (nor the hub's dependencies): a
    server given `hub=` calls these for each of its sessions.
    """

    def new_session_id(self) -> str:
        """A new cluster-unique session id, held by this node."""

    def attach(self, session: Any) -> None:
        """Make `session` (whose `id` came from `new_session_id`) reachable from every node."""

    def detach(self, session: Any) -> None:
        """Forget `session` (it ended): it leaves all its groups. Safe to call twice."""

    async def join(self, session: Any, group: str) -> None:
        """Add `session` to `group`."""

    async def leave(self, session: Any, group: str) -> None:
        """Remove `session` from `group`."""


# Sessions without a hub still have an id: this process's random prefix and a counter, the
# shape of a hub's ids (node, dot, counter), so that logs and maps keyed by id read alike.
_PROCESS_PREFIX = "local-" + secrets.token_hex(4)
_session_numbers = itertools.count(1)


def _local_session_id() -> str:
    return f"{_PROCESS_PREFIX}.{next(_session_numbers)}"


#: Notifications received and not yet handed to their handler, at most; at the bound the
#: driver stops reading (what it read last may take the queue one read past it).
MAX_QUEUED_NOTIFICATIONS = 128
#: Seconds a session being torn down spends on its last write and its close, and that the
#: notifications received before the end have to reach their handlers.
TEARDOWN_GRACE = 1.0

#: The events that end one of our requests.
OUTCOMES = (ResponseReceived, ErrorResponseReceived, InvalidResponseReceived, RequestTimedOut, RequestAborted)


def result_of(event: Event) -> Any:
    """The value a request returns for its outcome event, or the exception it raises.

    `ResponseReceived` gives its result; an error response raises `RemoteError` (or the
    `ProtocolErrorResponse` subclass of its code); an answer that does not fit raises
    `InvalidResponse`; a timeout raises `TimeoutError`; the end of the session raises
    `SessionClosed`.
    """
    if isinstance(event, ResponseReceived):
        return event.result
    if isinstance(event, ErrorResponseReceived):
        if event.code is not None and event.message is not None:
            raise ProtocolErrorResponse.from_code(
                event.code, event.message, method=event.method, request_id=event.request_id
            )
        raise RemoteError(event.error, method=event.method, request_id=event.request_id)
    if isinstance(event, InvalidResponseReceived):
        raise InvalidResponse(event.method, event.request_id, event.reason)
    if isinstance(event, RequestTimedOut):
        raise TimeoutError(f"request {event.request_id} ({event.method}) timed out")
    if isinstance(event, RequestAborted):
        raise SessionClosed(event.code, event.reason)
    raise TypeError(f"{event!r} is not the outcome of a request")


def log_event(logger: logging.Logger, event: Event) -> None:
    """Log what a driver has no other use for, never with the peer's payloads.

    An invalid message and an answer to an unknown id are warnings (the peer is at
    fault); a late answer to a request given up on and a request the connection rejected
    itself are routine, logged at debug. Other events are not logged.
    """
    if isinstance(event, InvalidMessageReceived):
        logger.warning("invalid message ignored: %s", event.reason)
    elif isinstance(event, UnexpectedResponseReceived):
        if event.late:
            logger.debug("late answer to request %d (%s) ignored", event.request_id, event.reason)
        else:
            logger.warning("answer to unknown request id %d ignored", event.request_id)
    elif isinstance(event, RequestRejected):
        logger.debug("request %d (%s) rejected: %s", event.request_id, event.method, event.message)


@attrs.frozen(kw_only=True)
class WebSocketURL:
    """A parsed `ws://` or `wss://` URL."""

    secure: bool
    "True for `wss://`."
    host: str
    "The host to dial (without brackets for IPv6)."
    port: int
    "The port to dial (80 or 443 when the URL has none)."
    target: str
    "The path and query to request."

    @property
    def host_header(self) -> str:
        """The `Host` header: `host:port`, as session-rs sends it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> WebSocketURL:
    """Split a `ws://` or `wss://` URL; raise `LocalProtocolError` for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise LocalProtocolError(f"not a ws:// or wss:// URL: {url!r}")
    if not parts.hostname:
        raise LocalProtocolError(f"no host in URL: {url!r}")
    if parts.username or parts.password:
        raise LocalProtocolError("credentials in the URL are not supported; pass headers")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        raise LocalProtocolError(f"invalid port in URL: {url!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebSocketURL(secure=parts.scheme == "wss", host=parts.hostname, port=port, target=target)


async def upgrade_decision(
    hook: UpgradeHook | None, request: UpgradeRequested, remote_address: Any, logger: logging.Logger
) -> Decision:
    """Ask an upgrade hook, sync or async, for its decision on `request`.

    No hook accepts. A hook that raises rejects with 500 (logged on `logger`), so that a
    faulty hook never leaves a client waiting; what it returns is checked by
    `Connection.decide`.
    """
    if hook is None:
        return None
    try:
        decision = hook(request, remote_address)
        if inspect.isawaitable(decision):
            decision = await decision
    except Exception:
        logger.exception("on_upgrade failed; rejecting the upgrade from %r with 500", remote_address)
        return Reject(status_code=500)
    return decision


async def serve_session(
    session: S, on_session: Callable[[S], Awaitable[object]], *, hub: SessionHub | None = None
) -> None:
    """Server: once the handshake of `session` is over, run `on_session(session)` on it.

    A handshake that failed (rejected, timed out, the client left) ends here. With `hub`,
    the session gets an id from the hub and is attached to it before `on_session` runs
    (detached when it ends). The session
    delivers no message before `on_session` first yields, so that it registers its handlers
    first. `on_session` returning does not close the session; `SessionClosed` from it is
    the session ending under it (logged at debug); any other exception is logged and
    closes the session with 1011.
    """
    try:
        await session.wait_handshake()
    except HandshakeError:
        return
    if hub is not None:
        session._attach_hub(hub)
    logger = session._logger
    try:
        await session._begin(_awaited(on_session(session)))
    except SessionClosed as exc:
        logger.debug("on_session ended with the session: %s", exc)
    except Exception:
        logger.exception("on_session failed; closing the session with 1011")
        await session.close(1011, "internal error")


async def _awaited(awaitable: Awaitable[object]) -> object:
    # `_begin` steps a coroutine; `on_session` may return any awaitable.
    return await awaitable


class _Call:
    """One request of the peer's, from its arrival to its answer: what cancels its handler."""

    __slots__ = ("handle",)

    def __init__(self) -> None:
        self.handle: Any = None


# A queued delivery: the handler, the method (for the log) and the handler's arguments;
# or, for a request that waits for the notifications before it, `None` and the request.
_Delivery: TypeAlias = tuple[Callable[..., Awaitable[Any]] | None, str, tuple[Any, ...]]


class SessionDriver(Generic[W, H]):
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

    #: Where the driver logs (each adapter names its own).
    _logger: ClassVar[logging.Logger] = logging.getLogger("session_core.driver")
    #: Whether a request handler cancelled by something else than the peer's `$/cancel`
    #: or the end of the session is answered -32800 (asyncio: a task can be cancelled by
    #: anyone; trio: a handler is only cancelled by its session, and needs no answer).
    _answer_cancelled: ClassVar[bool] = True

    def __init__(
        self, conn: Connection, *, remote_address: Any = None, upgrade_hook: UpgradeHook | None = None
    ) -> None:
        """Drive `conn`; `upgrade_hook` decides a server's upgrades (`None` accepts)."""
        self._conn = conn
        self._remote_address = remote_address
        self._upgrade_hook = upgrade_hook
        # The session's id (minted when first read, or by the hub it is attached to).
        self._id: str | None = None
        self._hub: SessionHub | None = None
        self._request_handlers: dict[str, RequestHandler[Any, Any]] = {}
        self._notification_handlers: dict[str, NotificationHandler[Any]] = {}
        self._any_request: AnyRequestHandler | None = None
        self._any_notification: AnyNotificationHandler | None = None
        # Our requests waiting for their outcome event, and pings for their pong.
        self._waiters: dict[int, W] = {}
        self._ping_waiters: dict[int, W] = {}
        # The peer's requests whose handler may still answer.
        self._in_flight: dict[int, _Call] = {}
        # Notifications (and requests behind them) waiting for their turn, and whether a
        # task delivers them.
        self._notifications: deque[_Delivery] = deque()
        self._notifying = False
        # The opening handshake.
        self._handshake_over = False
        self._handshake_error: HandshakeError | None = None
        self._handshake_waiters: list[W] = []
        # The pump.
        self._pumping = False
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

    # -- facts -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the session has ended (the close handshake is over or the connection lost)."""
        return self._conn.state is State.CLOSED

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

    @property
    def handshake_over(self) -> bool:
        """Whether the opening handshake has ended, opening the session or failing."""
        return self._handshake_over

    # -- handlers ----------------------------------------------------------------------

    @overload
    def on_request(
        self, method: Method[Req, Resp, Any], handler: None = None
    ) -> Callable[[RequestHandler[Req, Resp]], RequestHandler[Req, Resp]]: ...
    @overload
    def on_request(
        self, method: Method[Req, Resp, Any], handler: RequestHandler[Req, Resp]
    ) -> RequestHandler[Req, Resp]: ...
    def on_request(
        self, method: Method[Any, Any, Any], handler: RequestHandler[Any, Any] | None = None
    ) -> Any:
        """Serve `method`: `handler(data)` answers each of the peer's requests for it.

        Use it as a decorator (`@session.on_request(add)`) or call it with the handler.
        The handler is `async def handler(data) -> response`; it runs in a task of its own,
        concurrently with others (at most `Config.max_incoming_requests` at once). It
        fails with the method's error type by raising `MethodError(error)`; any other
        exception is logged and answered with -32603 (internal error). It is cancelled
        when the peer cancels the request or the session ends. A handler registered again
        for the same method replaces the first.

        Requests for methods with no handler are answered with -32601 (unless
        `on_any_request` serves them), and requests whose data does not fit with -32602,
        before any handler.
        """

        def register(handler: RequestHandler[Any, Any]) -> RequestHandler[Any, Any]:
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
        self, method: Method[Any, Any, Any], handler: NotificationHandler[Any] | None = None
    ) -> Any:
        """Handle the peer's notifications for `method` with `handler(data)`.

        Use it as a decorator or call it with the handler. The handler is
        `async def handler(data) -> None`. Notifications reach their handlers one at a
        time, in the order they arrived: a handler that must not hold up the next one
        starts a task of its own. An exception from a handler is logged and the session
        goes on. Notifications nobody handles are dropped (logged at debug level), unless
        `on_any_notification` takes them.
        """

        def register(handler: NotificationHandler[Any]) -> NotificationHandler[Any]:
            self._conn.add_method(method, requests=False)
            self._notification_handlers[method.name] = handler
            return handler

        return register if handler is None else register(handler)

    @overload
    def on_any_request(self, handler: None = None) -> Callable[[AnyRequestHandler], AnyRequestHandler]: ...
    @overload
    def on_any_request(self, handler: AnyRequestHandler) -> AnyRequestHandler: ...
    def on_any_request(self, handler: AnyRequestHandler | None = None) -> Any:
        """Serve every request that no `on_request` handler serves: `handler(request)`.

        Use it as a decorator (`@session.on_any_request()`) or call it with the handler.
        The handler is `async def handler(request: RequestReceived) -> result`: the event
        gives `method`, `data` (raw JSON) and `request_id`, and the result goes out as raw
        JSON. It runs as a request handler does (concurrently, `MethodError` for an error
        response, cancelled by `$/cancel`); raising a `ProtocolErrorResponse` (such as
        `MethodNotFound(-32601, "...")`) answers with that protocol error object, so that a
        proxy can pass the answers of another peer on as they were. Without it, such
        requests are answered -32601. Registering again replaces the handler.
        """

        def register(handler: AnyRequestHandler) -> AnyRequestHandler:
            self._conn.add_catch_all()
            self._any_request = handler
            return handler

        return register if handler is None else register(handler)

    @overload
    def on_any_notification(
        self, handler: None = None
    ) -> Callable[[AnyNotificationHandler], AnyNotificationHandler]: ...
    @overload
    def on_any_notification(self, handler: AnyNotificationHandler) -> AnyNotificationHandler: ...
    def on_any_notification(self, handler: AnyNotificationHandler | None = None) -> Any:
        """Receive every notification that no `on_notification` handler takes: `handler(notification)`.

        Use it as a decorator or call it with the handler. The handler is
        `async def handler(notification: NotificationReceived) -> None` (`method`, and
        `data` as raw JSON); it runs in the same one-at-a-time, arrival-order line as the
        other notification handlers. Registering again replaces the handler.
        """

        def register(handler: AnyNotificationHandler) -> AnyNotificationHandler:
            self._any_notification = handler
            return handler

        return register if handler is None else register(handler)

    # -- messages ----------------------------------------------------------------------

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

    # -- the hub -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        """This session's id: a string unique across the cluster of its hub.

        A server's sessions given `serve(..., hub=hub)` get theirs from the hub (the node's
        id, a dot, a counter), so that `hub.notify(id, ...)` and `hub.request(id, ...)` reach
        them from any node. Any other session (a client's, a server's without a hub) has one
        unique within this process (and random across processes), of the same shape.
        """
        if self._id is None:
            self._id = _local_session_id()
        return self._id

    @property
    def hub(self) -> Hub | None:
        """The hub this session is attached to (`serve(..., hub=hub)`), or `None`.

        What an application run by the command line (`session-py serve module:on_session
        --hub ...`) uses to reach other sessions: `await session.hub.broadcast(...)`.
        """
        return cast("Hub | None", self._hub)

    async def join(self, group: str) -> None:
        """Join `group` of the session's hub: `hub.broadcast(group, ...)` reaches it.

        A session leaves all its groups when it ends.

        Raises:
            LocalProtocolError: the session has no hub (it was not served with `hub=`).
            SessionClosed: the session has ended.
        """
        hub = self._hub_or_raise()
        if self.closed:
            raise SessionClosed(self._conn.close_code or 1006, self._conn.close_reason or "")
        await hub.join(self, group)

    async def leave(self, group: str) -> None:
        """Leave `group` (nothing happens if the session is not a member, or has ended).

        Raises:
            LocalProtocolError: the session has no hub (it was not served with `hub=`).
        """
        hub = self._hub_or_raise()
        if not self.closed:
            await hub.leave(self, group)

    def _hub_or_raise(self) -> SessionHub:
        # A clear error rather than an implicit hub: groups without a hub would reach no
        # one, and a silently private hub would hide a forgotten `hub=` in production.
        if self._hub is None:
            raise LocalProtocolError("this session has no hub: serve(..., hub=hub) gives its sessions one")
        return self._hub

    def _attach_hub(self, hub: SessionHub) -> None:
        """Take an id from `hub` and attach to it (a server does, after the handshake)."""
        if self.closed:
            return  # ended already: it would never be detached
        self._id = hub.new_session_id()
        self._hub = hub
        hub.attach(self)

    def _detach_hub(self) -> None:
        hub = self._hub
        if hub is not None:
            try:
                hub.detach(self)
            except Exception:
                # The hub may be closed already (it was left before the server): the session
                # ends anyway, and this runs inside the pump, which must not raise.
                self._logger.warning("detaching session %s from its hub failed", self._id, exc_info=True)

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

    async def wait_handshake(self) -> None:
        """Wait until the opening handshake is over.

        Raises:
            HandshakeRejected: (client) the server answered with an HTTP error.
            HandshakeError: the handshake failed otherwise (the connection ended first, an
                invalid response or request, the handshake timeout, a rejected upgrade).
        """
        if not self._handshake_over:
            waiter = self._new_waiter()
            self._handshake_waiters.append(waiter)
            try:
                await self._park(waiter)
            except BaseException:
                if waiter in self._handshake_waiters:
                    self._handshake_waiters.remove(waiter)
                raise
        if self._handshake_error is not None:
            raise self._handshake_error

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Session {self._conn.role.value} {self._conn.state.value} {self._remote_address!r}>"

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
                    handlers.get(type(event), self._log_event)(event)
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

    def _reading_blocked(self) -> bool:
        """Whether to stop reading: the peer's requests in flight or the notifications
        waiting are at their bound, or the connection holds input (handshake, start)."""
        return self._conn.reading_paused or len(self._notifications) >= MAX_QUEUED_NOTIFICATIONS

    # -- events ------------------------------------------------------------------------

    def _log_event(self, event: Event) -> None:
        log_event(self._logger, event)

    def _on_outcome(self, event: Any) -> None:
        # One of `OUTCOMES`: `request()` turns it into its result or exception.
        waiter = self._waiters.pop(event.request_id, None)
        if waiter is not None:
            self._wake(waiter, event)

    def _on_request(self, event: RequestReceived) -> None:
        handler = self._request_handlers.get(event.method)
        if handler is not None:
            delivery: _Delivery = (handler, event.method, (event.data,))
        elif self._any_request is not None:
            delivery = (self._any_request, event.method, (event,))
        else:  # not in a typed connection; answered as the engine would
            self._conn.send_protocol_error(event.request_id, ErrorCode.METHOD_NOT_FOUND, "method not found")
            return
        call = self._in_flight[event.request_id] = _Call()
        if self._notifying:
            # Notifications received before this request are still being handled: it
            # starts after them (in the delivery line), then runs concurrently.
            self._notifications.append((None, event.method, (event.request_id, call, delivery)))
        else:
            call.handle = self._spawn(self._answer(event.request_id, call, delivery))

    async def _answer(self, request_id: int, call: _Call, delivery: _Delivery) -> None:
        handler, _, args = delivery
        assert handler is not None
        conn = self._conn
        error: Exception | None = None
        result: Any = None
        try:
            try:
                result = await handler(*args)
            except Exception as exc:
                error = exc
            # Write flow control: while writes wait for the transport the answer waits
            # too, and keeps its request in flight, so that a peer that reads nothing
            # meets the bound on requests (reading stops) instead of a growing buffer.
            if self._write_blocked():
                await self._drained()
        except BaseException:
            # Cancelled. The peer's `$/cancel` (answered by the connection) and the end of
            # the session take the request out of `_in_flight` first.
            if self._in_flight.get(request_id) is call:
                del self._in_flight[request_id]
                if self._answer_cancelled and conn.state is State.OPEN:
                    conn.send_protocol_error(request_id, ErrorCode.REQUEST_CANCELLED, "request cancelled")
                    self._sent()
            raise
        # After a `$/cancel` the peer may reuse the id while this handler still ran.
        if self._in_flight.get(request_id) is call:
            del self._in_flight[request_id]
            conn.send_outcome(request_id, result=result, exception=error)
            self._sent()

    def _on_notification(self, event: NotificationReceived) -> None:
        handler = self._notification_handlers.get(event.method)
        if handler is not None:
            self._notifications.append((handler, event.method, (event.data,)))
        elif self._any_notification is not None:
            self._notifications.append((self._any_notification, event.method, (event,)))
        else:
            self._logger.debug("notification %r has no handler: dropped", event.method)
            return
        if not self._notifying:
            self._notifying = True
            self._spawn_notifier(self._deliver_notifications())

    async def _deliver_notifications(self) -> None:
        # One task at a time delivers the notifications, in order, and starts the requests
        # that arrived behind them; it ends when none wait.
        queue = self._notifications
        try:
            while queue:
                handler, method, args = queue.popleft()
                if len(queue) == MAX_QUEUED_NOTIFICATIONS - 1:
                    self._sent()  # under the bound again: reading resumes
                if handler is None:
                    request_id, call, delivery = args
                    if request_id in self._in_flight and self._in_flight[request_id] is call:
                        # Not cancelled while it waited.
                        call.handle = self._spawn(self._answer(request_id, call, delivery))
                    continue
                try:
                    await handler(*args)
                except Exception:
                    self._logger.exception("handler of notification %r failed", method)
        finally:
            self._notifying = False

    def _on_cancel_requested(self, event: CancelRequested) -> None:
        # The connection already answered -32800: stop the handler.
        call = self._in_flight.pop(event.request_id, None)
        if call is not None and call.handle is not None:
            self._cancel(call.handle)

    def _on_pong(self, event: PongReceived) -> None:
        waiter = self._ping_waiters.pop(event.ping_id, None)
        if waiter is not None:
            self._wake(waiter, self._clock())

    # -- the handshake -----------------------------------------------------------------

    def _end_handshake(self) -> None:
        self._handshake_over = True
        waiters, self._handshake_waiters = self._handshake_waiters, []
        for waiter in waiters:
            self._wake(waiter, None)

    def _on_upgrade_requested(self, event: UpgradeRequested) -> None:
        if self._upgrade_hook is None:
            self._decide(None)
        else:
            # In a task of the session: cancelled if the connection ends first (the
            # handshake timeout, the client leaving), when there is nothing left to decide.
            self._spawn(self._ask_upgrade_hook(event))

    async def _ask_upgrade_hook(self, event: UpgradeRequested) -> None:
        self._decide(await upgrade_decision(self._upgrade_hook, event, self._remote_address, self._logger))

    def _decide(self, decision: Decision) -> None:
        conn = self._conn
        if not isinstance(conn, ServerConnection) or conn.state is not State.UPGRADE_REQUESTED:
            return  # the handshake timed out or the client left while the hook ran
        conn.decide(decision, now=self._now())
        if not self.closed:  # accepted
            self._end_handshake()
        self._pump()

    def _on_handshake_accepted(self, event: HandshakeAccepted) -> None:
        self._end_handshake()

    def _on_upgrade_rejected(self, event: UpgradeRejected) -> None:
        self._handshake_error = HandshakeRejected(event.status_code, event.headers, event.body)

    def _on_closed(self, event: ConnectionClosed) -> None:
        if not self._handshake_over:
            if self._handshake_error is None:
                self._handshake_error = HandshakeError(event.reason)
            self._end_handshake()
        # The connection has ended every request with `RequestAborted` already; pings
        # have no such event.
        pings, self._ping_waiters = self._ping_waiters, {}
        for waiter in pings.values():
            self._wake(waiter, event)
        # The handlers still running can no longer answer.
        self._in_flight.clear()
        self._detach_hub()  # it leaves all its groups
        self._session_ended()
