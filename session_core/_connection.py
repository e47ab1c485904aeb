"""`Connection`: the sans-I/O session engine, what both roles share.

Design note. This module is the pump contract, the inputs, the outputs and the commands,
and the life cycle they drive: the state, the close handshake and the end. Each other
concern is a module of its own, of which the connection owns one object:

- `_ws` (wsproto, h11): the handshake's HTTP and the frames; `_frames`: the records it
  gives, and the joining of fragments under the message size limit;
- `_reading`: what arrives, routed message by message, paused at the bound of requests in
  flight, and the input held back meanwhile; it hands back what changes our life;
- `_outgoing`: our requests and notifications (ids, pending table, deadlines, answers,
  ids given up on);
- `_incoming`: the methods served, the peer's requests in flight and our answers to them;
- `_keepalive`: pings and pongs; `_state`: the states and their transitions;
- `_client` and `_server`: the opening handshake of each role (`ClientConnection`,
  `ServerConnection`).

The hot path of a round trip: `receive_data`, `Reader.read` over what
`_ws.WebSocket.receive` yields (a whole text message as a bare `str`), then
`IncomingRequests.receive_request` and `respond`, or `OutgoingRequests.receive_answer`.

The pump contract, after any call: take `events()` (or `next_event()` until `None`), write
`data_to_send()`, close the transport when `should_close_transport` is true, stop reading
while `reading_paused` is true, and re-arm the timer from `get_timer()`. Nothing the peer
sends makes an input raise once the handshake has begun; it becomes events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _frames, _ws
from ._config import (
    ABNORMAL_CLOSURE,
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    Config,
    Role,
    valid_close_code,
)
from ._errors import LocalProtocolError, SessionClosed
from ._events import ConnectionClosed, Event, Headers
from ._frames import LifeEvent
from ._incoming import IncomingRequests
from ._keepalive import Due, Keepalive
from ._messages import CANCEL_METHOD
from ._methods import Method
from ._outgoing import OutgoingRequests
from ._reading import Reader
from ._state import TRANSITIONS, Input, State

if TYPE_CHECKING:
    from ._client import ClientConnection
    from ._server import ServerConnection

logger = logging.getLogger("session_core")

Req = TypeVar("Req")

__all__ = ["CANCEL_METHOD", "Connection"]


class Connection:
    """One end of a session, without I/O: what a client and a server share.

    Build one with `ClientConnection(...)` or `ServerConnection(...)` (or their aliases
    `Connection.client(...)` and `Connection.server(...)`). With `methods`, the connection
    is typed: requests and notifications for those methods arrive converted to their types,
    requests for others are answered with -32601 (unless `add_catch_all()` was called) and
    requests whose data does not fit with -32602, by the connection itself. Without
    `methods` (`None`) it is untyped: every request arrives with raw JSON data. Answers to
    our requests are typed when the request was sent with a `Method`, raw when sent with a
    method name.
    """

    __slots__ = (
        "_close_deadline",
        "_close_transport",
        "_events",
        "_handshake_deadline",
        "_incoming",
        "_keepalive",
        "_linger_until",
        "_now",
        "_out",
        "_outgoing",
        "_reader",
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
        # Both lists are shared with `_outgoing` and `_incoming`, which write and report
        # into them: they are emptied in place, never replaced.
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._close_transport = False
        self._outgoing = OutgoingRequests(config, self._ws, self._out, self._events)
        self._incoming = IncomingRequests(methods, config, self._ws, self._out, self._events)
        self._keepalive = Keepalive(config.keepalive_interval, config.keepalive_timeout, self._ws, self._out)
        # With `wait_for_start`, messages wait after the handshake until `start()`.
        self._reader = Reader(
            config,
            self._ws,
            self._incoming,
            self._outgoing,
            self._keepalive,
            self._out,
            self._events,
            wait_for_start=wait_for_start,
        )
        self._handshake_deadline = (
            None if config.handshake_timeout is None else now + config.handshake_timeout
        )
        self._close_deadline: float | None = None
        # Set while the connection lingers after its end (see `lingering`): until when.
        self._linger_until: float | None = None
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

    @staticmethod
    def client(
        host: str,
        target: str = "/",
        *,
        now: float,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
        subprotocols: Iterable[str] = (),
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> ClientConnection:
        """The same as `ClientConnection(...)`."""
        from ._client import ClientConnection  # noqa: PLC0415 - it subclasses this class

        return ClientConnection(
            host,
            target,
            now=now,
            headers=headers,
            subprotocols=subprotocols,
            config=config,
            methods=methods,
            wait_for_start=wait_for_start,
        )

    @staticmethod
    def server(
        *,
        now: float,
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> ServerConnection:
        """The same as `ServerConnection(...)`."""
        from ._server import ServerConnection  # noqa: PLC0415 - it subclasses this class

        return ServerConnection(now=now, config=config, methods=methods, wait_for_start=wait_for_start)

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
        self._reader.track(new)

    @property
    def reading_paused(self) -> bool:
        """True while input would only be held: the peer's requests in flight are at
        `Config.max_incoming_requests`, or an upgrade waits for `accept()`/`reject()`, or
        the session waits for `start()`.

        A driver should stop reading from the transport while this is true (input given
        anyway is held, unbounded): the peer then feels TCP back-pressure instead of our
        memory growing. Answers, `accept()` and `start()` resume; check after each call.
        """
        return self._reader.paused

    @property
    def should_close_transport(self) -> bool:
        """True once the connection is over (from its `ConnectionClosed` on): after writing
        `data_to_send()`, the transport is to be closed, and nothing will be sent again.

        Close it at once unless `lingering` is true; then close it when `lingering`
        becomes false.
        """
        return self._close_transport

    @property
    def lingering(self) -> bool:
        """True while the connection is over but its transport should stay open, read and
        drained, a little longer: we failed the connection (a message too big, invalid
        UTF-8, a protocol error; not a keepalive timeout) and sent our close frame, and
        the peer may still be sending, perhaps the rest of a huge message. Closing a TCP
        socket with unread input makes the kernel send a reset, which destroys the close
        frame in flight: the peer would never see our close code.

        Meanwhile keep feeding `receive_data` (the input is skipped through, looking for
        the peer's close frame, and discarded), `receive_eof` at the end of the stream,
        and `handle_timer` at `get_timer()`: the peer's close frame, the end of the stream
        or `Config.close_timeout` (counted from the end, or from our close frame when we
        were closing already) ends it. There is no lingering without a close timeout.
        Nothing more is sent, so a driver may shut down its write side at once (TCP
        `SHUT_WR`): a peer that waits for our TCP close before sending its own sees it.
        No event comes of it.
        """
        return self._linger_until is not None

    @property
    def pending_requests(self) -> int:
        """How many of our requests wait for their answers."""
        return len(self._outgoing)

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
        self._reader.wait_for_start = False
        self._reader.track(self._state)
        self._resume()

    def add_method(self, method: Method[Any, Any, Any], *, requests: bool = True) -> None:
        """Serve `method`: its requests (with `requests=True`) and its notifications
        arrive typed. Makes an untyped connection typed: requests for methods never added
        are then answered with -32601 (unless `add_catch_all()` was called).
        """
        self._incoming.add_method(method, requests=requests)

    def add_catch_all(self) -> None:
        """Deliver requests for methods never added instead of answering them -32601.

        On a typed connection, such a request then arrives as `RequestReceived` with the
        method's name and raw JSON data, and the answers to it are sent raw (untyped), as
        on an untyped connection. Notifications for such methods always arrive raw.
        """
        self._incoming.catch_all = True

    # -- output ----------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or `None` when there is none for now."""
        return self._events.pop(0) if self._events else None

    def events(self) -> list[Event]:
        """Every event there is for now, oldest first."""
        events = self._events
        if not events:
            return []
        taken = events.copy()
        events.clear()
        return taken

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
            timer = self._outgoing.earliest_deadline()
            keepalive = self._keepalive.timer()
            if keepalive is not None and (timer is None or keepalive < timer):
                return keepalive
            return timer
        if state is State.CLOSING:
            return self._close_deadline
        if state is State.CLOSED:
            return self._linger_until
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
            if self._linger_until is not None and data and self._ws.discard(bytes(data)):
                self._linger_until = None  # the peer's close frame: the transport may close
            return
        if self._reader.paused:
            self._reader.hold(data)
            return
        self._now = now
        event = self._reader.read(data if type(data) is bytes else bytes(data))
        if event is not None:  # rarely: nearly all input is messages, which the reader handles
            self._handle_life(event)

    def receive_eof(self) -> None:
        """The transport reached its end (the peer closed it, or it broke).

        After calling this method: take the events; the connection is closed.
        """
        state = self._state
        if state is State.CLOSED:
            self._linger_until = None
            return
        if state is State.HANDSHAKING and self.role is Role.CLIENT:
            # A rejection body may end with the stream.
            event = self._reader.read(None, eof=True)
            if event is not None:
                self._handle_life(event)
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
        self._now = now
        if state is State.OPEN:
            # A ping that is due is sent; a pong that is overdue fails the connection.
            if self._keepalive.due(now, reading_paused=self._reader.parked is not None) is Due.TIMEOUT:
                # No lingering: a peer that answers no ping is not sending either.
                self._fail(INTERNAL_ERROR, "keepalive ping timeout", linger=False)
            self._outgoing.expire(now)
            return
        if state is State.CLOSED:
            if self._linger_until is not None and now >= self._linger_until:
                self._linger_until = None
            return
        deadline = self._close_deadline if state is State.CLOSING else self._handshake_deadline
        if deadline is None or now < deadline:
            return
        if state is State.CLOSING:
            self._end(Input.TIMED_OUT, self.close_code or ABNORMAL_CLOSURE, self.close_reason)
        else:
            self._end(Input.TIMED_OUT, ABNORMAL_CLOSURE, "handshake timed out")

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
        method: object,
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
            LocalProtocolError: the session is not open yet, or `method` is neither a
                `Method` nor a name.
            SessionClosed: the session is closing or closed.
            TooManyPendingRequests: `Config.max_pending_requests` is reached.
            EncodingError: `data` cannot be sent.

        After calling this method: write `data_to_send()`, re-arm `get_timer()`.
        """
        if self._state is not State.OPEN:
            self._check_open()
        return self._outgoing.send(method, data, now, timeout)

    @overload
    def send_notification(self, method: Method[Req, Any, Any], data: Req) -> None: ...
    @overload
    def send_notification(self, method: str, data: Any) -> None: ...
    def send_notification(self, method: object, data: Any) -> None:
        """Send a notification (never answered).

        Raises as `send_request` does (but never `TooManyPendingRequests`).

        After calling this method: write `data_to_send()`.
        """
        self._check_open()
        self._outgoing.notify(method, data)

    def send_response(self, request_id: int, result: Any) -> None:
        """Answer the peer's request `request_id` with a success.

        An answer to a request the peer cancelled, or given after the connection ended, is
        dropped silently (the handler lost a race it could not see).

        Raises:
            LocalProtocolError: no request `request_id` waits for an answer.
            EncodingError: `result` cannot be sent (the request still waits).
            TypeError: `request_id` is not an `int` (in both builds, see `session_core`).

        After calling this method: take the events, write `data_to_send()`.
        """
        if type(request_id) is not int:
            _check_id(request_id)
        self._incoming.respond(request_id, result)
        if self._reader.parked is not None:
            self._resume()  # a request in flight fewer: reading may go on

    def send_error_response(self, request_id: int, error: Any) -> None:
        """Answer the peer's request `request_id` with an error value of the method's
        error type. Raises as `send_response` does."""
        if type(request_id) is not int:
            _check_id(request_id)
        self._incoming.respond_error(request_id, error)
        if self._reader.parked is not None:
            self._resume()

    def send_protocol_error(self, request_id: int, code: int, message: str) -> None:
        """Answer the peer's request `request_id` with a protocol error object. Raises as
        `send_response` does."""
        if type(request_id) is not int:
            _check_id(request_id)
        self._incoming.respond_protocol_error(request_id, code, message)
        if self._reader.parked is not None:
            self._resume()

    def send_outcome(
        self, request_id: int, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        """Answer the peer's request with what its handler gave: `result`, or `exception`.

        This is the one place that decides how a handler's outcome goes on the wire, for
        every driver: a `MethodError` becomes an error response with its value; any other
        exception (and a result or error value that cannot be sent) becomes -32603, logged
        here with its traceback, its text sent only with `Config.expose_internal_errors`.
        """
        if type(request_id) is not int:
            _check_id(request_id)
        self._incoming.respond_outcome(request_id, result, exception)
        if self._reader.parked is not None:
            self._resume()

    def cancel_request(self, request_id: int) -> bool:
        """Give up our request `request_id`: no outcome event will come for it, `$/cancel`
        goes to the peer, and a late answer is reported as `UnexpectedResponseReceived`.
        Returns whether the request was pending.

        After calling this method: write `data_to_send()`.
        """
        if type(request_id) is not int:
            _check_id(request_id)
        return self._outgoing.cancel(request_id)

    def send_ping(self) -> int:
        """Send a ping; `PongReceived` with the returned id follows its pong.

        Any pong counts (session-rs answers every ping with an empty pong): a pong
        acknowledges the ping whose payload it echoes, or else the oldest, and every
        older one.

        After calling this method: write `data_to_send()`.
        """
        self._check_open()
        return self._keepalive.send_ping()

    def close(self, code: int = NORMAL_CLOSURE, reason: str = "", *, now: float) -> None:
        """Start the close handshake; the pending requests fail at once (`RequestAborted`).

        Before the session is open this just ends the connection. Closing a closing or
        closed connection does nothing.

        After calling this method: take the events, write `data_to_send()`, re-arm
        `get_timer()`.
        """
        if not valid_close_code(code):
            raise LocalProtocolError(f"{code} is not a close code one may send")
        if len(reason.encode("utf-8", "surrogatepass")) > 123:
            raise LocalProtocolError("a close reason holds at most 123 bytes of UTF-8")
        state = self._state
        if state is State.OPEN:
            self._write_close(code, reason)
            self._set_state(Input.CLOSE_SENT)
            timeout = self.config.close_timeout
            self._close_deadline = None if timeout is None else now + timeout
            self._outgoing.abort(code, reason)
            # No data frame may follow our close frame (RFC 6455 5.5.1): the peer's
            # requests can no longer be answered, and their answers are dropped. Input held
            # back for them (or for `start()`) is read again: the peer's close is in it.
            self._incoming.end()
            self._reader.wait_for_start = False
            self._reader.track(self._state)
            self._resume()
        elif state is not State.CLOSING and state is not State.CLOSED:
            self._end(Input.LOST, ABNORMAL_CLOSURE, "closed before the handshake completed")

    # -- reading ---------------------------------------------------------------------

    def _handle_life(self, event: LifeEvent | None) -> None:
        # The reader handles what arrives, but hands back what changes our life: handled
        # here, one at a time, reading going on after each unless the connection ended.
        while event is not None:
            if isinstance(event, _frames.CloseReceived):
                self._handle_close(event.code, event.reason)
            elif isinstance(event, _frames.FramingFailed):
                self._fail(event.code, event.reason)
            else:
                self._handle_handshake(event)
            if self._state is State.CLOSED:
                return
            event = self._reader.read()

    def _resume(self) -> None:
        # Go on with input held back, if reading may (after an answer, `accept()`,
        # `start()`, `close()`).
        if self._state is not State.CLOSED:
            self._handle_life(self._reader.read())

    def _handle_handshake(self, event: _frames.HandshakeEvent) -> None:
        # Each role reads its own side of the opening handshake.
        raise NotImplementedError  # pragma: no cover - overridden by both roles

    def _opened(self, now: float) -> None:
        self._keepalive.start(now)

    def _handle_close(self, code: int, reason: str) -> None:
        if self._state is State.OPEN:
            # RFC 6455 5.5.1: answer a close frame with one of ours, echoing its code.
            self._write_close(code, reason)
            self._end(Input.CLOSE_RECEIVED, code, reason)
        elif self._state is State.CLOSING:
            self._end(Input.CLOSE_RECEIVED, self.close_code or code, self.close_reason)

    def _write_close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self._out.append(self._ws.close(code, reason))

    # -- ending ----------------------------------------------------------------------

    def _fail(self, code: int, reason: str, *, linger: bool = True) -> None:
        # RFC 6455 7.1.7, "Fail the WebSocket Connection": send a close frame if we still
        # can, then drop the connection without waiting for the peer's.
        sent = self._state is State.CLOSING  # our close frame went before
        if self._ws.can_send_close:
            self._write_close(code, reason)
            sent = True
        self._end(Input.FAIL, code, reason, linger=linger and sent)

    def _end(self, event: Input, code: int, reason: str, *, linger: bool = False) -> None:
        if linger and self.config.close_timeout is not None:
            # Our close frame is out, the peer's is not in: read on (`lingering`), from
            # exactly where reading stopped, for the close timeout at most.
            until = self._close_deadline if self._state is State.CLOSING else None
            self._linger_until = self._now + self.config.close_timeout if until is None else until
            held = self._reader.stop()
            if self._ws.discard_from_here() or self._ws.discard(held):
                self._linger_until = None
        self._set_state(event)
        self.close_code, self.close_reason = code, reason
        self._outgoing.abort(code, reason)
        self._incoming.end()
        self._reader.clear()
        self._keepalive.clear()
        self._close_transport = True
        self._events.append(ConnectionClosed(code=code, reason=reason))

    def _check_open(self) -> None:
        if self._state is not State.OPEN:
            if self._state is State.CLOSING or self._state is State.CLOSED:
                raise SessionClosed(self.close_code or ABNORMAL_CLOSURE, self.close_reason)
            raise LocalProtocolError("the session is not open yet: the handshake is not complete")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.role.value} {self._state.value} pending={len(self._outgoing)}>"


def _check_id(request_id: object) -> None:
    # The compiled build refuses an id that is not an `int` as it is passed; the pure one
    # checks the same here (a `str` would be "no such request", a `float` might match).
    if not isinstance(request_id, int):
        raise TypeError(f"a request id is an int, not {type(request_id).__name__}")
