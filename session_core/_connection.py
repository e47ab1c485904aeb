"""`Connection`: the sans-I/O session engine, for both roles.

It takes bytes, the end of the stream, calls and the time (`now`), and gives events, bytes
to send and its next deadline. It owns everything that is protocol: the handshake (through
wsproto), the messages, request ids and the pending table, typed conversion, limits, timers,
keepalive and the close handshake. The adapters only move bytes and wake tasks.

The pump, after any call: take `events()` (or `next_event()` until `None`), write
`data_to_send()`, close the transport when `should_close_transport` is true, and re-arm the
timer from `get_timer()`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, overload

import attrs

from . import _messages, _ws
from ._errors import (
    PROTOCOL_ERROR_CODES,
    EncodingError,
    ErrorCode,
    LocalProtocolError,
    MethodError,
    SessionClosed,
    TooManyPendingRequests,
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
from ._ids import IdAllocator, RecentIds
from ._messages import MAX_ID, InvalidMessage, Kind
from ._methods import Method, describe_error
from ._state import TRANSITIONS, Input, State
from ._timers import Deadlines

logger = logging.getLogger("session_core")

Req = TypeVar("Req")

#: The reserved notification that cancels a request (`PROTOCOL.md`, "Extensions").
CANCEL_METHOD = "$/cancel"


# Close codes (RFC 6455 section 7.4.1).
class CloseCode(enum.IntEnum):
    """The close codes this project sends or reports (RFC 6455 section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    NO_STATUS = 1005
    "Received only: a close frame without a code (session-rs sends those), a normal end."
    ABNORMAL_CLOSURE = 1006
    "Reported only: the connection ended without a close frame."
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


NORMAL_CLOSURE = CloseCode.NORMAL_CLOSURE
ABNORMAL_CLOSURE = CloseCode.ABNORMAL_CLOSURE
MESSAGE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
INTERNAL_ERROR = CloseCode.INTERNAL_ERROR


class Role(enum.Enum):
    """Which end of the WebSocket connection this is."""

    CLIENT = "client"
    SERVER = "server"


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, not {value!r}")


@attrs.frozen(kw_only=True)
class Config:
    """Limits and timeouts of a connection. `None` turns a limit or a timer off."""

    max_message_size: int | None = attrs.field(default=1 << 20, validator=_positive)
    "Largest message accepted, in bytes (1 MiB, as websockets). Over it: close 1009."
    max_incoming_requests: int = attrs.field(default=128, validator=_positive)
    """Requests from the peer in flight at once. At the bound, reading pauses: nothing more
    is read (pings and close frames included) until a handler answers. The keepalive does
    not count that time against the peer."""
    max_pending_requests: int = attrs.field(default=65536, validator=_positive)
    "Our own requests waiting for answers; one more raises `TooManyPendingRequests`."
    request_timeout: float | None = attrs.field(default=None, validator=_positive)
    "Default timeout of our requests, when `send_request` gives none."
    keepalive_interval: float | None = attrs.field(default=20.0, validator=_positive)
    "Seconds between keepalive pings."
    keepalive_timeout: float | None = attrs.field(default=20.0, validator=_positive)
    "Seconds to wait for a pong before failing the connection with 1011."
    handshake_timeout: float | None = attrs.field(default=10.0, validator=_positive)
    "Seconds for the opening handshake (both roles) before dropping the connection."
    close_timeout: float | None = attrs.field(default=10.0, validator=_positive)
    "Seconds to wait for the peer's close frame after sending ours."
    max_rejection_body: int = attrs.field(default=64 * 1024, validator=_positive)
    "Client: bytes of a rejected handshake's body kept for `UpgradeRejected`."
    remembered_ids: int = attrs.field(default=1024, validator=_positive)
    "How many given-up request ids are remembered, to tell a late answer from a bogus one."
    expose_internal_errors: bool = False
    "Put a failing handler's exception text in the -32603 answer (off: it may leak secrets)."


@attrs.frozen(kw_only=True)
class Accept:
    """An upgrade hook's answer: open the session."""

    subprotocol: str | None = None
    "One of the subprotocols the client offered, or `None`."
    headers: tuple[tuple[bytes | str, bytes | str], ...] = ()
    "Extra headers for the 101 response."


@attrs.frozen(kw_only=True)
class Reject:
    """An upgrade hook's answer: refuse with an HTTP error; no session opens."""

    status_code: int = 403
    "The HTTP status, 4xx or 5xx."
    body: bytes = b""
    "The response body."
    headers: tuple[tuple[bytes | str, bytes | str], ...] = ()
    "Extra response headers."


class _Dropped:
    """Marks an answer to a request the peer cancelled, or given after the end."""


_DROPPED = _Dropped()


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 are reserved and never sent; 3000-4999 are for
    # libraries and applications.
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


class Connection:
    """One end of a session, without I/O.

    Build it with `Connection.client(...)` or `Connection.server(...)`. With `methods`,
    the connection is typed: requests and notifications for those methods arrive converted
    to their types, requests for others are answered with -32601 and requests whose data
    does not fit with -32602, by the connection itself. Without `methods` (`None`) it is
    untyped: every request arrives with raw JSON data. Answers to our requests are typed
    when the request was sent with a `Method`, raw when sent with a method name.
    """

    __slots__ = (
        "_cancelled_by_peer",
        "_close_deadline",
        "_close_transport",
        "_deadlines",
        "_events",
        "_given_up",
        "_handshake_deadline",
        "_held",
        "_holding",
        "_ids",
        "_incoming",
        "_keepalive_sent_at",
        "_methods",
        "_next_keepalive",
        "_notifications",
        "_now",
        "_out",
        "_parts",
        "_pending",
        "_ping_count",
        "_pings",
        "_pong_deadline",
        "_reader",
        "_rejection",
        "_size",
        "_state",
        "_ws",
        "close_code",
        "close_reason",
        "config",
        "host",
        "path",
        "request_headers",
        "response_headers",
        "role",
        "subprotocol",
    )

    def __init__(
        self,
        role: Role,
        *,
        now: float,
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> None:
        self.role = role
        self.config = config = config or Config()
        self._ws = _ws.WebSocket(client=role is Role.CLIENT, max_message_size=config.max_message_size)
        self._state = State.HANDSHAKING
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._close_transport = False
        self._methods = None if methods is None else {m.name: m for m in methods}
        self._notifications: dict[str, Method[Any, Any, Any]] = dict(self._methods or {})
        # Our requests.
        self._ids = IdAllocator()
        self._pending: dict[int, Method[Any, Any, Any] | str] = {}
        self._deadlines = Deadlines()
        self._given_up = RecentIds(config.remembered_ids)
        # The peer's requests that wait for our answer.
        self._incoming: dict[int, Method[Any, Any, Any] | None] = {}
        self._cancelled_by_peer = RecentIds(config.remembered_ids)
        # Input held back while reading is paused or the upgrade awaits a decision.
        self._reader: Iterator[tuple[Any, ...]] | None = None
        self._held = bytearray()
        # With `wait_for_start`, messages wait after the handshake until `start()`.
        self._holding = wait_for_start
        # A message arriving in fragments.
        self._parts: list[str] = []
        self._size = 0
        # Pings in flight, oldest first: (payload, user ping id or None for keepalive).
        self._pings: list[tuple[bytes, int | None]] = []
        self._ping_count = 0
        self._next_keepalive: float | None = None
        self._keepalive_sent_at = 0.0
        self._pong_deadline: float | None = None
        self._handshake_deadline = (
            None if config.handshake_timeout is None else now + config.handshake_timeout
        )
        self._close_deadline: float | None = None
        self._rejection: tuple[int, Headers, bytearray] | None = None
        self._now = now
        self.close_code: int | None = None
        "The code of the close that ended (or is ending) the session."
        self.close_reason = ""
        "The reason of that close."
        self.path = ""
        "The handshake's request target (set on both roles)."
        self.host = ""
        "The `Host` of the handshake."
        self.request_headers: Headers = ()
        "Server: the upgrade request's headers. Client: the extra headers it sent."
        self.response_headers: Headers = ()
        "Client: the 101 response's extra headers. Server: the extra headers it sent."
        self.subprotocol: str | None = None
        "The subprotocol agreed in the handshake, if any."

    @classmethod
    def client(
        cls,
        host: str,
        target: str = "/",
        *,
        now: float,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
        subprotocols: Iterable[str] = (),
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> Connection:
        """A client that starts its handshake at once (the request is in `data_to_send()`).

        Args:
            host: the `Host` header, `host:port` as dialled (session-rs sends it so).
            target: the path and query to request.
            headers: extra headers for the upgrade request (an `Origin`, credentials).
            subprotocols: subprotocols to offer, in order of preference.
        """
        conn = cls(Role.CLIENT, now=now, config=config, methods=methods, wait_for_start=wait_for_start)
        extra = tuple((_bytes(k), _bytes(v)) for k, v in headers)
        conn.path, conn.host, conn.request_headers = target, host, extra
        try:
            conn._out.append(conn._ws.start_client(host, target, extra, tuple(subprotocols)))
        except Exception as exc:  # h11 refuses a header name or value it cannot send
            raise LocalProtocolError(f"invalid upgrade request: {exc}") from None
        return conn

    @classmethod
    def server(
        cls,
        *,
        now: float,
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> Connection:
        """A server end, waiting for the client's upgrade request."""
        return cls(Role.SERVER, now=now, config=config, methods=methods, wait_for_start=wait_for_start)

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """Where the connection is in its life."""
        return self._state

    def _set_state(self, event: Input) -> None:
        try:
            new = TRANSITIONS[self._state, event]
        except KeyError:
            raise LocalProtocolError(f"cannot {event.value} in state {self._state.value}") from None
        logger.debug("%s: %s -> %s", self.role.value, self._state.value, new.value)
        self._state = new

    @property
    def reading_paused(self) -> bool:
        """True while input would only be held: the peer's requests in flight are at
        `Config.max_incoming_requests`, or an upgrade waits for `accept()`/`reject()`, or
        the session waits for `start()`.

        A driver should stop reading from the transport while this is true (input given
        anyway is held, unbounded): the peer then feels TCP back-pressure instead of our
        memory growing. Answers, `accept()` and `start()` resume; check after each call.
        """
        return self._reader is not None or self._state is State.UPGRADE_REQUESTED or self._waiting_for_start

    @property
    def should_close_transport(self) -> bool:
        """True once the driver should close the transport, after writing `data_to_send()`."""
        return self._close_transport

    @property
    def pending_requests(self) -> int:
        """How many of our requests wait for their answers."""
        return len(self._pending)

    @property
    def requests_in_flight(self) -> int:
        """How many of the peer's requests wait for our answers."""
        return len(self._incoming)

    def start(self) -> None:
        """Begin delivering the peer's messages, when built with `wait_for_start=True`.

        A driver that registers methods after the handshake (an `on_session` callback, the
        body of `async with connect(...)`) builds its connection with `wait_for_start`, so
        that a message arriving right after the handshake (even in the same read) waits
        for its handler instead of being answered -32601. Until `start()`, input is held.

        After calling this method: take the events, write `data_to_send()`.
        """
        self._holding = False
        self._resume()

    def add_method(self, method: Method[Any, Any, Any], *, requests: bool = True) -> None:
        """Serve `method`: its requests (with `requests=True`) and its notifications
        arrive typed. Makes an untyped connection typed: requests for methods never added
        are then answered with -32601.
        """
        if method.name.startswith("$/"):
            raise LocalProtocolError(f"method names starting with '$/' are reserved: {method.name!r}")
        if self._methods is None:
            self._methods = {}
        if requests:
            self._methods[method.name] = method
        self._notifications[method.name] = method

    # -- output ----------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or `None` when there is none for now."""
        return self._events.pop(0) if self._events else None

    def events(self) -> list[Event]:
        """Every event there is for now, oldest first."""
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> bytes:
        """The bytes to write to the transport, in one piece (empty when none)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return bytes(data)

    def get_timer(self) -> float | None:
        """The earliest deadline at which `handle_timer` must be called, or `None`."""
        state = self._state
        if state is State.OPEN:
            timer = self._deadlines.earliest()
            keepalive = self._pong_deadline if self._pong_deadline is not None else self._next_keepalive
            if keepalive is not None and (timer is None or keepalive < timer):
                return keepalive
            return timer
        if state is State.CLOSING:
            return self._close_deadline
        if state is State.CLOSED:
            return None
        return self._handshake_deadline

    # -- inputs ----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        """Feed bytes read from the transport.

        Nothing the peer sends makes this raise once the handshake has begun: violations
        become events (`InvalidMessageReceived`, `ConnectionClosed`, ...).

        After calling this method: take the events, write `data_to_send()`, check
        `should_close_transport` and `reading_paused`, re-arm `get_timer()`.
        """
        if self._state is State.CLOSED or not data:
            return
        if self._reader is not None or self._state is State.UPGRADE_REQUESTED or self._waiting_for_start:
            self._held += data
            return
        self._now = now
        self._read(self._ws.receive(data if type(data) is bytes else bytes(data)))

    def receive_eof(self) -> None:
        """The transport reached its end (the peer closed it, or it broke).

        After calling this method: take the events; the connection is closed.
        """
        state = self._state
        if state is State.CLOSED:
            return
        if state is State.HANDSHAKING and self.role is Role.CLIENT:
            # A rejection body may end with the stream.
            self._reader = None
            self._read(self._ws.receive(None))
            if self._state is State.CLOSED:
                return
        if state is State.CLOSING:
            self._end(Input.LOST, self.close_code or ABNORMAL_CLOSURE, self.close_reason)
        else:
            self._end(Input.LOST, ABNORMAL_CLOSURE, "connection lost")

    def handle_timer(self, now: float) -> None:
        """Act on every deadline at or before `now`: request timeouts, keepalive pings
        and their timeout, the handshake and close timeouts. Expiry gives events.

        After calling this method: take the events, write `data_to_send()`, check
        `should_close_transport`, re-arm `get_timer()`.
        """
        state = self._state
        if state is State.OPEN:
            self._handle_keepalive(now)
            for request_id in self._deadlines.pop_expired(now):
                name = self._give_up(request_id, "timed out")
                self._events.append(RequestTimedOut(request_id=request_id, method=name))
            return
        deadline = self._close_deadline if state is State.CLOSING else self._handshake_deadline
        if state is State.CLOSED or deadline is None or now < deadline:
            return
        if state is State.CLOSING:
            self._end(Input.TIMED_OUT, self.close_code or ABNORMAL_CLOSURE, self.close_reason)
        else:
            self._end(Input.TIMED_OUT, ABNORMAL_CLOSURE, "handshake timed out")

    # -- the handshake ---------------------------------------------------------------

    def accept(
        self,
        *,
        now: float,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> None:
        """Server: accept the upgrade (after `UpgradeRequested`); the session opens.

        After calling this method: write `data_to_send()` and take the events (input held
        since the upgrade request is processed now).
        """
        if self._state is not State.UPGRADE_REQUESTED:
            raise LocalProtocolError(f"accept() needs an upgrade request, the state is {self._state.value}")
        extra = tuple((_bytes(k), _bytes(v)) for k, v in headers)
        try:
            self._out.append(self._ws.accept(subprotocol, extra))
        except Exception as exc:  # wsproto refuses a subprotocol the client did not offer
            raise LocalProtocolError(str(exc)) from None
        self._set_state(Input.ACCEPT)
        self.subprotocol, self.response_headers = subprotocol, extra
        self._open(now)
        self._resume()

    def reject(
        self,
        status_code: int = 403,
        body: bytes = b"",
        *,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> None:
        """Server: refuse the upgrade with an HTTP response; the connection ends.

        After calling this method: write `data_to_send()` and close the transport.
        """
        if self._state is not State.UPGRADE_REQUESTED:
            raise LocalProtocolError(f"reject() needs an upgrade request, the state is {self._state.value}")
        if not 400 <= status_code <= 599:
            raise LocalProtocolError(f"reject with a 4xx or 5xx status, not {status_code}")
        extra = [(_bytes(k), _bytes(v)) for k, v in headers]
        self._out.append(self._ws.reject(status_code, extra, body))
        self._end(Input.REJECT, ABNORMAL_CLOSURE, f"handshake rejected with {status_code}")

    def decide(self, decision: object, *, now: float) -> None:
        """Server: apply an upgrade hook's decision: `Accept`, `Reject` or `None` (accept).

        Made for hooks that decide while the connection goes on: a decision that comes
        after the connection ended (a handshake timeout) is ignored, and a decision that
        cannot be applied (not one of the three, or a subprotocol the client did not offer)
        is logged and answered with 500, so that a faulty hook never leaves a client waiting.

        After calling this method: write `data_to_send()` and take the events.
        """
        if self._state is State.CLOSED:
            return
        if decision is not None and not isinstance(decision, Accept | Reject):
            logger.error("upgrade decision %r is not Accept, Reject or None; rejecting with 500", decision)
            decision = Reject(status_code=500)
        try:
            if isinstance(decision, Reject):
                self.reject(decision.status_code, decision.body, headers=decision.headers)
            else:
                decision = decision or Accept()
                self.accept(now=now, subprotocol=decision.subprotocol, headers=decision.headers)
        except LocalProtocolError:
            if self._state is not State.UPGRADE_REQUESTED:
                raise  # decided twice: the caller's bug
            logger.exception("cannot apply the upgrade decision %r; rejecting with 500", decision)
            self.reject(500)

    def _open(self, now: float) -> None:
        interval = self.config.keepalive_interval
        self._next_keepalive = None if interval is None else now + interval

    # -- commands --------------------------------------------------------------------

    @overload
    def send_request(
        self,
        method: Method[Req, Any, Any],
        data: Req,
        *,
        now: float | None = None,
        timeout: float | None = None,
    ) -> int: ...
    @overload
    def send_request(
        self, method: str, data: Any, *, now: float | None = None, timeout: float | None = None
    ) -> int: ...
    def send_request(
        self,
        method: Method[Any, Any, Any] | str,
        data: Any,
        *,
        now: float | None = None,
        timeout: float | None = None,
    ) -> int:
        """Send a request and return its id. Its outcome arrives as an event.

        Args:
            method: a `Method` (typed) or a method name (raw JSON in and out).
            data: the request data, of the method's request type.
            now: the current time; needed when there is a timeout.
            timeout: seconds before `RequestTimedOut` (default `Config.request_timeout`).

        Raises:
            SessionClosed: the session is closing or closed.
            TooManyPendingRequests: `Config.max_pending_requests` is reached.
            EncodingError: `data` cannot be sent.

        After calling this method: write `data_to_send()`, re-arm `get_timer()`.
        """
        if self._state is not State.OPEN:
            self._check_open()
        if len(self._pending) >= self.config.max_pending_requests:
            raise TooManyPendingRequests(f"{len(self._pending)} requests already wait for answers")
        if timeout is None:
            timeout = self.config.request_timeout
        if timeout is not None and now is None:
            raise LocalProtocolError("a request with a timeout needs `now`")
        if isinstance(method, Method):
            name, value = method.name, _unstructure(method.unstructure_request, data)
        else:
            name, value = method, data
        request_id = self._ids.allocate(self._pending)
        self._out.append(self._ws.send_text(_messages.request(request_id, name, value)))
        self._pending[request_id] = method
        if self._given_up:
            self._given_up.pop(request_id)
        if timeout is not None:
            assert now is not None
            self._deadlines.set(request_id, now + timeout)
        return request_id

    @overload
    def send_notification(self, method: Method[Req, Any, Any], data: Req) -> None: ...
    @overload
    def send_notification(self, method: str, data: Any) -> None: ...
    def send_notification(self, method: Method[Any, Any, Any] | str, data: Any) -> None:
        """Send a notification (never answered).

        After calling this method: write `data_to_send()`.
        """
        self._check_open()
        if isinstance(method, Method):
            name, value = method.name, _unstructure(method.unstructure_request, data)
        else:
            name, value = method, data
        self._out.append(self._ws.send_text(_messages.notification(name, value)))

    def send_response(self, request_id: int, result: Any) -> None:
        """Answer the peer's request `request_id` with a success.

        An answer to a request the peer cancelled, or given after the connection ended, is
        dropped silently (the handler lost a race it could not see).

        Raises:
            LocalProtocolError: no request `request_id` waits for an answer.
            EncodingError: `result` cannot be sent (the request still waits).

        After calling this method: take the events, write `data_to_send()`.
        """
        method = self._answerable(request_id)
        if isinstance(method, _Dropped):
            return
        value = result if method is None else _unstructure(method.unstructure_response, result)
        self._answer(request_id, _messages.response(request_id, value))

    def send_error_response(self, request_id: int, error: Any) -> None:
        """Answer the peer's request `request_id` with an error value of the method's
        error type. Raises as `send_response` does."""
        method = self._answerable(request_id)
        if isinstance(method, _Dropped):
            return
        value = error if method is None else _unstructure(method.unstructure_error, error)
        self._answer(request_id, _messages.error_response(request_id, value))

    def send_protocol_error(self, request_id: int, code: int, message: str) -> None:
        """Answer the peer's request `request_id` with a protocol error object. Raises as
        `send_response` does."""
        if self._answerable(request_id) is _DROPPED:
            return
        self._answer(request_id, _protocol_error_text(request_id, code, message))

    def send_outcome(
        self, request_id: int, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        """Answer the peer's request with what its handler gave: `result`, or `exception`.

        This is the one place that decides how a handler's outcome goes on the wire, for
        every driver: a `MethodError` becomes an error response with its value; any other
        exception (and a result or error value that cannot be sent) becomes -32603, logged
        here with its traceback, its text sent only with `Config.expose_internal_errors`.
        """
        if exception is None:
            try:
                self.send_response(request_id, result)
                return
            except EncodingError as exc:
                exception = exc
        elif isinstance(exception, MethodError):
            try:
                self.send_error_response(request_id, exception.error)
                return
            except EncodingError as exc:
                exception = exc
        method = self._incoming.get(request_id)
        logger.error(
            "handler of request %d (%s) failed",
            request_id,
            method.name if method is not None else "untyped",
            exc_info=exception,
        )
        message = "internal error"
        if self.config.expose_internal_errors:
            message = f"internal error: {type(exception).__name__}: {exception}"
        self.send_protocol_error(request_id, ErrorCode.INTERNAL_ERROR, message)

    def cancel_request(self, request_id: int) -> bool:
        """Give up our request `request_id`: no outcome event will come for it, `$/cancel`
        goes to the peer, and a late answer is reported as `UnexpectedResponseReceived`.
        Returns whether the request was pending.

        After calling this method: write `data_to_send()`.
        """
        if request_id not in self._pending:
            return False
        self._give_up(request_id, "cancelled")
        return True

    def send_ping(self) -> int:
        """Send a ping; `PongReceived` with the returned id follows its pong.

        Any pong counts (session-rs answers every ping with an empty pong): a pong
        acknowledges the ping whose payload it echoes, or else the oldest, and every
        older one.

        After calling this method: write `data_to_send()`.
        """
        self._check_open()
        self._ping_count += 1
        self._write_ping(self._ping_count)
        return self._ping_count

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "", *, now: float) -> None:
        """Start the close handshake; the pending requests fail at once (`RequestAborted`).

        Before the session is open this just ends the connection. Closing a closing or
        closed connection does nothing.

        After calling this method: take the events, write `data_to_send()`, re-arm
        `get_timer()`.
        """
        if not _valid_close_code(code):
            raise LocalProtocolError(f"{code} is not a close code one may send")
        if len(reason.encode("utf-8", "surrogatepass")) > 123:
            raise LocalProtocolError("a close reason holds at most 123 bytes of UTF-8")
        state = self._state
        if state is State.OPEN:
            self._write_close(code, reason)
            self._set_state(Input.CLOSE_SENT)
            timeout = self.config.close_timeout
            self._close_deadline = None if timeout is None else now + timeout
            self._abort_pending()
            # No data frame may follow our close frame (RFC 6455 5.5.1): the peer's
            # requests can no longer be answered, and their answers are dropped. Input held
            # back for them (or for `start()`) is read again: the peer's close is in it.
            self._incoming.clear()
            self._holding = False
            self._resume()
        elif state is not State.CLOSING and state is not State.CLOSED:
            self._end(Input.LOST, ABNORMAL_CLOSURE, "closed before the handshake completed")

    # -- reading ---------------------------------------------------------------------

    def _read(self, reader: Iterator[tuple[Any, ...]]) -> None:
        # Dispatch what the WebSocket layer gives until it needs more bytes, or until the
        # peer's requests in flight reach the bound: then the rest waits in `reader`.
        limit = self.config.max_incoming_requests
        while True:
            for event in reader:
                if event[0] == _ws.TEXT:  # nearly every event: no detour through _dispatch
                    self._handle_text(event[1], event[2])
                else:
                    self._dispatch(event)
                if self._state is State.CLOSED:
                    self._reader = None
                    self._held.clear()
                    return
                if len(self._incoming) >= limit or self._waiting_for_start:
                    self._reader = reader
                    return
            self._reader = None
            if not self._held or self._state is State.UPGRADE_REQUESTED:
                return
            data = bytes(self._held)
            self._held.clear()
            reader = self._ws.receive(data)

    @property
    def _waiting_for_start(self) -> bool:
        return self._holding and self._state is State.OPEN

    def _resume(self) -> None:
        if self._waiting_for_start:
            return
        if self._reader is not None:
            if len(self._incoming) < self.config.max_incoming_requests:
                self._read(self._reader)
        elif self._held and self._state is not State.CLOSED:
            data = bytes(self._held)
            self._held.clear()
            self._read(self._ws.receive(data))

    def _dispatch(self, event: tuple[Any, ...]) -> None:
        tag = event[0]
        if tag == _ws.TEXT:
            self._handle_text(event[1], event[2])
        elif tag == _ws.PING:
            if self._state is State.OPEN:
                self._out.append(self._ws.pong(event[1]))
        elif tag == _ws.PONG:
            self._handle_pong(event[1])
        elif tag == _ws.BINARY:
            self._handle_binary(event[1], event[2])
        elif tag == _ws.CLOSE:
            self._handle_close(event[1], event[2])
        elif tag == _ws.FAILED:
            self._fail(event[1], event[2])
        else:
            self._handle_handshake(event)

    def _handle_handshake(self, event: tuple[Any, ...]) -> None:
        tag = event[0]
        if tag == _ws.UPGRADE:
            _, self.path, self.request_headers, self.host, subprotocols = event
            self._set_state(Input.UPGRADE_RECEIVED)
            self._held += self._ws.take_leftover()
            self._events.append(
                UpgradeRequested(
                    path=self.path, headers=self.request_headers, host=self.host, subprotocols=subprotocols
                )
            )
        elif tag == _ws.ACCEPTED:
            _, self.subprotocol, self.response_headers = event
            self._set_state(Input.ACCEPTED)
            self._open(self._now)
            self._events.append(
                HandshakeAccepted(subprotocol=self.subprotocol, headers=self.response_headers)
            )
        elif tag == _ws.REJECTED:
            _, status, headers, has_body = event
            self._rejection = (status, headers, bytearray())
            if not has_body:
                self._handle_rejection_body(b"", True)
        elif tag == _ws.REJECT_BODY:
            self._handle_rejection_body(event[1], event[2])
        elif tag == _ws.HANDSHAKE_FAILED:
            if self.role is Role.SERVER:
                self._out.append(self._ws.take_handshake_response())
                self._end(Input.FAIL, ABNORMAL_CLOSURE, f"not a WebSocket upgrade: {event[1]}")
            else:
                self._end(Input.FAIL, ABNORMAL_CLOSURE, f"invalid handshake response: {event[1]}")

    def _handle_rejection_body(self, data: bytes, finished: bool) -> None:
        assert self._rejection is not None
        status, headers, body = self._rejection
        body += data[: self.config.max_rejection_body - len(body)]
        if finished:
            self._events.append(UpgradeRejected(status_code=status, headers=headers, body=bytes(body)))
            self._end(Input.REJECTED, ABNORMAL_CLOSURE, f"handshake rejected with {status}")

    def _handle_text(self, text: str, finished: bool) -> None:
        if self._state is not State.OPEN:
            return  # closing: what the peer still sends is not for us
        limit = self.config.max_message_size
        if finished and not self._parts and (limit is None or len(text) * 4 <= limit):
            self._size = 0  # whole, and small enough however many bytes a character takes
        elif limit is not None:
            # Count bytes as they stream in, so that a huge message is refused before it
            # is whole. `len` of an ASCII str is its UTF-8 size.
            self._size += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
            if self._size > limit:
                self._fail(MESSAGE_TOO_BIG, f"message over {limit} bytes")
                return
        if not finished:
            self._parts.append(text)
            return
        if self._parts:
            self._parts.append(text)
            text = "".join(self._parts)
            self._parts.clear()
        self._size = 0
        try:
            kind, request_id, method, payload = _messages.parse(text)
        except InvalidMessage as exc:
            self._events.append(InvalidMessageReceived(reason=str(exc)))
            return
        if kind is Kind.RESPONSE or kind is Kind.ERROR_RESPONSE:
            self._handle_answer(kind, request_id, payload)
        elif kind is Kind.REQUEST:
            self._handle_request(request_id, method, payload)
        else:
            self._handle_notification(method, payload)

    def _handle_binary(self, size: int, finished: bool) -> None:
        # Binary messages carry nothing in version 1; they still count against the limit.
        limit = self.config.max_message_size
        self._size += size
        if limit is not None and self._size > limit:
            self._fail(MESSAGE_TOO_BIG, f"message over {limit} bytes")
        elif finished:
            self._size = 0
            self._events.append(InvalidMessageReceived(reason="binary message ignored"))

    def _handle_request(self, request_id: int, name: str, data: Any) -> None:
        if request_id in self._incoming:
            self._events.append(
                InvalidMessageReceived(reason=f"request id {request_id} is already in flight")
            )
            return
        if self._cancelled_by_peer:
            self._cancelled_by_peer.pop(request_id)
        methods = self._methods
        if methods is None:
            self._incoming[request_id] = None
        else:
            method = methods.get(name)
            if method is None:
                self._reject_request(
                    request_id, name, ErrorCode.METHOD_NOT_FOUND, f"method not found: {name}"
                )
                return
            try:
                data = method.structure_request(data)
            except Exception as exc:
                message = f"invalid request data for {name}: {describe_error(exc, method.request)}"
                self._reject_request(request_id, name, ErrorCode.INVALID_REQUEST_DATA, message)
                return
            self._incoming[request_id] = method
        self._events.append(RequestReceived(request_id=request_id, method=name, data=data))

    def _reject_request(self, request_id: int, name: str, code: int, message: str) -> None:
        self._out.append(self._ws.send_text(_protocol_error_text(request_id, code, message)))
        self._events.append(
            RequestRejected(request_id=request_id, method=name, code=int(code), message=message)
        )

    def _handle_notification(self, name: str, data: Any) -> None:
        if name == CANCEL_METHOD:
            self._handle_cancel(data)
            return
        method = self._notifications.get(name)
        if method is not None:
            try:
                data = method.structure_request(data)
            except Exception as exc:
                reason = f"invalid data for notification {name}: {describe_error(exc, method.request)}"
                self._events.append(InvalidMessageReceived(reason=reason))
                return
        self._events.append(NotificationReceived(method=name, data=data))

    def _handle_cancel(self, data: Any) -> None:
        request_id = data.get("id") if type(data) is dict else None
        if type(request_id) is not int or not 0 <= request_id <= MAX_ID:
            self._events.append(InvalidMessageReceived(reason="$/cancel without a valid id"))
            return
        if request_id not in self._incoming:
            return  # already answered: the cancel crossed our answer on the wire
        self._answer(
            request_id, _protocol_error_text(request_id, ErrorCode.REQUEST_CANCELLED, "request cancelled")
        )
        self._cancelled_by_peer.add(request_id, "cancelled")
        self._events.append(CancelRequested(request_id=request_id))

    def _handle_answer(self, kind: Kind, request_id: int, payload: Any) -> None:
        method = self._pending.pop(request_id, None)
        if method is None:
            reason = self._given_up.pop(request_id)
            if reason is not None and kind is Kind.ERROR_RESPONSE and _is_cancelled_answer(payload):
                return  # the peer confirms the `$/cancel` we sent: expected, nothing to report
            self._events.append(
                UnexpectedResponseReceived(request_id=request_id, reason=reason or "unknown id")
            )
            return
        if self._deadlines:
            self._deadlines.discard(request_id)
        name = method.name if isinstance(method, Method) else method
        event: Event
        try:
            if kind is Kind.RESPONSE:
                result = method.structure_response(payload) if isinstance(method, Method) else payload
                event = ResponseReceived(request_id=request_id, method=name, result=result)
            elif _is_protocol_error(payload):
                event = ErrorResponseReceived(
                    request_id=request_id,
                    method=name,
                    error=payload,
                    code=payload["code"],
                    message=payload["message"],
                )
            else:
                error = method.structure_error(payload) if isinstance(method, Method) else payload
                event = ErrorResponseReceived(request_id=request_id, method=name, error=error)
        except Exception as exc:
            assert isinstance(method, Method)
            expected = method.response if kind is Kind.RESPONSE else method.error
            reason = describe_error(exc, expected)
            event = InvalidResponseReceived(request_id=request_id, method=name, reason=reason)
        self._events.append(event)

    def _handle_pong(self, payload: bytes) -> None:
        pings = self._pings
        if not pings:
            return
        count = 1  # an unknown payload (session-rs's empty pong) acknowledges the oldest
        for index, (sent, _) in enumerate(pings):
            if sent == payload:
                count = index + 1
                break
        for _, ping_id in pings[:count]:
            if ping_id is not None:
                self._events.append(PongReceived(ping_id=ping_id))
        del pings[:count]
        if self._pong_deadline is not None:
            self._pong_deadline = None
            interval = self.config.keepalive_interval
            self._next_keepalive = None if interval is None else self._keepalive_sent_at + interval

    def _handle_keepalive(self, now: float) -> None:
        if self._pong_deadline is not None and now >= self._pong_deadline:
            if self._reader is not None:
                # Reading is paused (busy handlers): the pong may well be waiting unread.
                # A slow application is not a dead peer; wait for reading to resume.
                self._pong_deadline = now + (self.config.keepalive_timeout or 0.0)
                return
            self._fail(INTERNAL_ERROR, "keepalive ping timeout")
        elif self._next_keepalive is not None and now >= self._next_keepalive:
            self._write_ping(None)
            self._keepalive_sent_at = now
            timeout, interval = self.config.keepalive_timeout, self.config.keepalive_interval
            if timeout is None:
                self._next_keepalive = None if interval is None else now + interval
            else:
                self._next_keepalive = None
                self._pong_deadline = now + timeout

    def _handle_close(self, code: int, reason: str) -> None:
        if self._state is State.OPEN:
            # RFC 6455 5.5.1: answer a close frame with one of ours, echoing its code.
            self._write_close(code, reason)
            self._end(Input.CLOSE_RECEIVED, code, reason)
        elif self._state is State.CLOSING:
            self._end(Input.CLOSE_RECEIVED, self.close_code or code, self.close_reason)

    # -- writing ---------------------------------------------------------------------

    def _write_ping(self, ping_id: int | None) -> None:
        self._ping_count += ping_id is None
        payload = (self._ping_count & MAX_ID).to_bytes(4, "big")
        self._pings.append((payload, ping_id))
        self._out.append(self._ws.ping(payload))

    def _write_close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._out.append(self._ws.close(code, reason))

    # -- answering -------------------------------------------------------------------

    def _answerable(self, request_id: int) -> Method[Any, Any, Any] | _Dropped | None:
        try:
            return self._incoming[request_id]
        except KeyError:
            pass
        if request_id in self._cancelled_by_peer or self._state in (State.CLOSING, State.CLOSED):
            return _DROPPED
        raise LocalProtocolError(f"no request {request_id} waits for an answer (answered twice?)")

    def _answer(self, request_id: int, text: bytes) -> None:
        del self._incoming[request_id]
        self._out.append(self._ws.send_text(text))
        if self._reader is not None:
            self._resume()

    # -- giving up and ending --------------------------------------------------------

    def _give_up(self, request_id: int, why: str) -> str:
        method = self._pending.pop(request_id)
        self._deadlines.discard(request_id)
        self._given_up.add(request_id, why)
        if self._state is State.OPEN:
            self._out.append(self._ws.send_text(_messages.notification(CANCEL_METHOD, {"id": request_id})))
        return method.name if isinstance(method, Method) else method

    def _abort_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        code = self.close_code or ABNORMAL_CLOSURE
        self._deadlines = Deadlines()
        for request_id, method in pending.items():
            name = method.name if isinstance(method, Method) else method
            self._events.append(
                RequestAborted(request_id=request_id, method=name, code=code, reason=self.close_reason)
            )
        pending.clear()

    def _fail(self, code: int, reason: str) -> None:
        # RFC 6455 7.1.7, "Fail the WebSocket Connection": send a close frame if we still
        # can, then drop the connection without waiting for the peer's.
        if self._ws.can_send_close:
            self._write_close(code, reason)
        self._end(Input.FAIL, code, reason)

    def _end(self, event: Input, code: int, reason: str) -> None:
        self._set_state(event)
        self.close_code, self.close_reason = code, reason
        self._abort_pending()
        self._incoming.clear()
        self._parts.clear()
        self._held.clear()
        self._reader = None
        self._pings.clear()
        self._close_transport = True
        self._events.append(ConnectionClosed(code=code, reason=reason))

    def _check_open(self) -> None:
        if self._state is not State.OPEN:
            if self._state is State.CLOSING or self._state is State.CLOSED:
                raise SessionClosed(self.close_code or ABNORMAL_CLOSURE, self.close_reason)
            raise LocalProtocolError("the session is not open yet: the handshake is not complete")

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self._state.value} pending={len(self._pending)}>"


def _unstructure(hook: Any, value: Any) -> Any:
    try:
        return hook(value)
    except Exception as exc:
        raise EncodingError(f"value does not fit its type: {exc}") from None


def _protocol_error_text(request_id: int, code: int, message: str) -> bytes:
    return _messages.error_response(request_id, {"code": int(code), "message": message})


def _is_protocol_error(value: Any) -> bool:
    return (
        type(value) is dict
        and type(value.get("code")) is int
        and value["code"] in PROTOCOL_ERROR_CODES
        and type(value.get("message")) is str
    )


def _is_cancelled_answer(value: Any) -> bool:
    return _is_protocol_error(value) and value["code"] == ErrorCode.REQUEST_CANCELLED


def _bytes(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value
