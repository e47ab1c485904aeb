"""The fuzz harness: one `Connection` (server or client) driven by a list of operations,
with every documented invariant checked after each step.

An operation is what a hostile peer sends (raw bytes, a frame, a text message in
fragments, the end of the stream), what time does (`Advance`) or what the local user does
(send a request, a notification or a ping, cancel, answer, close). The harness answers the
requests it receives itself, in ways chosen from the request id: a result, an exception, a
`MethodError`, a value that cannot be sent, or later.

Invariants (a failure raises `Violation`):

- Nothing raises but what is documented: `receive_data`, `receive_eof` and `handle_timer`
  never raise; a call raises only `SessionClosed` (after the end) or
  `TooManyPendingRequests` (at the bound).
- Events are the documented ones, none comes after `ConnectionClosed` and none is a
  handshake event once open. `ConnectionClosed` comes once, with a documented code, and
  `should_close_transport` with it.
- Every byte written is a whole, valid frame: masked by a client and never by a server,
  no RSV bit, never fragmented, nothing after our close frame, control payloads of at most
  125 bytes, close frames with a code one may send and a UTF-8 reason. Every text frame is
  UTF-8 JSON (no NaN, no lone surrogate) and one of the four messages, well formed.
- Answers: never more answers for an id than requests received with it; while the
  connection is open, every request received is answered exactly once in the end; every
  request we sent ends with exactly one outcome (unless we cancelled it), and every
  outcome is for a request we sent.
"""

from __future__ import annotations

import collections
import enum
import json
import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import attrs

from session_core import (
    CancelRequested,
    Config,
    Connection,
    ConnectionClosed,
    EncodingError,
    ErrorResponseReceived,
    Event,
    HandshakeAccepted,
    InvalidMessageReceived,
    InvalidResponseReceived,
    LocalProtocolError,
    Method,
    MethodError,
    NotificationReceived,
    PongReceived,
    RequestAborted,
    RequestReceived,
    RequestRejected,
    RequestTimedOut,
    ResponseReceived,
    Role,
    SessionClosed,
    State,
    TooManyPendingRequests,
    UnexpectedResponseReceived,
    UpgradeRejected,
    UpgradeRequested,
)
from session_core.driver import OUTCOMES
from tests import wire
from tests.methods import AddArgs, add, echo, shout, tick
from tests.wire import CLOSE, CONTINUATION, PING, PONG, TEXT

MAX_ID = 0xFFFF_FFFF


class Violation(AssertionError):
    """The connection broke one of its documented promises."""


class KnownBug(Exception):
    """A violation already reported (see `KNOWN_BUGS` and RELIABILITY.md)."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name


KNOWN_BUGS: dict[str, str] = {}
"""Violations found and reported but not fixed yet, by name: what the harness raises as
`KnownBug` for them. A run counts them apart (and goes on) unless it is strict, so that a
known bug does not hide the next one; `tests/reliability` pins each with a strict xfail
test. Empty now: BUG-2, the last one found here, is fixed. Delete an entry (and its check
in `Harness._guard`) once its bug is fixed."""


# -- methods ---------------------------------------------------------------------------


METHODS: tuple[Method[Any, Any, Any], ...] = (echo, add, shout, tick)
METHOD_NAMES = tuple(m.name for m in METHODS)


# -- operations ------------------------------------------------------------------------


class Feed(NamedTuple):
    """Raw bytes from the peer."""

    data: bytes


class Frame(NamedTuple):
    """One frame from the peer, possibly malformed.

    `rsv` is OR-ed into the first byte; `wrong_mask` masks a server's frame or leaves a
    client's unmasked; `length_form` 0 encodes the length minimally, 1 and 2 in the 16-bit
    and 64-bit forms whatever it is.
    """

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    wrong_mask: bool = False
    length_form: int = 0


class Message(NamedTuple):
    """A text message from the peer (any bytes, valid UTF-8 or not), in `pieces` frames,
    with a ping between fragments when `ping_between`."""

    text: bytes
    pieces: int = 1
    ping_between: bool = False


class Advance(NamedTuple):
    """Time passes; due timers fire."""

    seconds: float


class Action(enum.Enum):
    REQUEST = "request"
    TYPED_REQUEST = "typed request"
    NOTIFY = "notify"
    PING = "ping"
    CANCEL = "cancel"
    ANSWER = "answer"
    CLOSE = "close"


class Local(NamedTuple):
    """The local user does something; `arg` picks among its variants."""

    action: Action
    arg: int = 0


class Eof(NamedTuple):
    """The peer's stream ends."""


Op = Feed | Frame | Message | Advance | Local | Eof


@attrs.frozen
class Case:
    """One fuzz case: the connection to build and what happens to it."""

    role: Role
    typed: bool
    config: Config
    ops: tuple[Op, ...]
    chunk: int | None = None
    "Deliver the peer's bytes this many at a time (`None`: each operation's bytes whole)."
    wait_for_start: bool = False
    handshake: bytes | None = None
    "The peer's half of the handshake; `None`: a valid one."


# -- frames ----------------------------------------------------------------------------


def encode_frame(frame: Frame, *, to_server: bool) -> bytes:
    """The bytes of `frame` as the peer sends it: masked towards a server (unless wrong)."""
    length = len(frame.payload)
    masked = to_server != frame.wrong_mask
    form = frame.length_form
    bits = None if form == 0 else 16 if form == 1 and length < 1 << 16 else 64
    # A key that depends only on the frame, so that a saved case replays byte for byte.
    key = bytes((0x5A, 0x17, 0xC3, length & 0xFF)) if masked else None
    return wire.encode_frame(
        frame.opcode, frame.payload, fin=frame.fin, mask=key, rsv=frame.rsv, length_bits=bits
    )


def message_frames(message: Message) -> list[Frame]:
    """A text message cut into `pieces` frames (some may be empty)."""
    pieces = max(1, message.pieces)
    text = message.text
    step = max(1, len(text) // pieces) if text else 1
    parts = [text[i * step : (i + 1) * step] for i in range(pieces - 1)]
    parts.append(text[(pieces - 1) * step :])
    frames: list[Frame] = []
    for index, part in enumerate(parts):
        opcode = TEXT if index == 0 else CONTINUATION
        frames.append(Frame(opcode, part, fin=index == pieces - 1))
        if message.ping_between and index < pieces - 1:
            frames.append(Frame(PING, b"mid"))
    return frames


def parse_frames(data: bytes) -> list[wire.Frame]:
    """Split our output into frames; whole frames in the shortest length form only."""
    try:
        frames = wire.parse_frames(data)
    except ValueError as exc:
        raise Violation(f"a torn frame in the output: {exc}") from None
    for frame in frames:
        if not frame.minimal_length:
            raise Violation(f"a frame of {len(frame.payload)} bytes with a longer length than needed")
    return frames


# -- the harness -----------------------------------------------------------------------

#: Codes a connection may end with: ours when it fails the peer (1002 protocol error,
#: 1006 lost, 1007 invalid UTF-8, 1009 too big, 1011 keepalive), 1005 for a close frame
#: without a code, or any code a peer may put in a close frame (echoed), or ours.
PEER_CODES = frozenset({*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)})
ENDING_CODES = PEER_CODES | {1002, 1005, 1006, 1007, 1009, 1011}
#: Close codes the harness itself closes with.
LOCAL_CLOSE_CODES = (1000, 1001, 3000, 4999)
DOCUMENTED_EVENTS = frozenset(
    {
        CancelRequested,
        ConnectionClosed,
        ErrorResponseReceived,
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
    }
)
HANDSHAKE_EVENTS = frozenset({HandshakeAccepted, UpgradeRequested, UpgradeRejected})
KINDS = frozenset({"request", "response", "errorresponse", "notification"})


def _sendable_close_code(code: int) -> bool:
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def _no_constants(name: str) -> Any:
    raise Violation(f"{name} in our output: not JSON")


class Stats:
    """What the cases did, for the report of a long run."""

    def __init__(self) -> None:
        self.cases = 0
        self.events: collections.Counter[str] = collections.Counter()
        self.close_codes: collections.Counter[int] = collections.Counter()
        self.handshakes: collections.Counter[str] = collections.Counter()
        self.known_bugs: collections.Counter[str] = collections.Counter()
        self.bytes_in = 0
        self.frames_out = 0

    def merge_event(self, event: Event) -> None:
        self.events[type(event).__name__] += 1
        if isinstance(event, ConnectionClosed):
            self.close_codes[event.code] += 1


STATS = Stats()
"Totals over every case run in this process."


class Harness:
    """Drives one connection through a `Case` and checks every invariant on the way."""

    def __init__(self, case: Case, *, stats: Stats = STATS) -> None:
        self.case = case
        self.stats = stats
        self.role = case.role
        self.now = 0.0
        self.conn: Connection
        self.closed = False
        self.close_frame_sent = False
        self.received: collections.Counter[int] = collections.Counter()
        self.answered: collections.Counter[int] = collections.Counter()
        self.deferred: dict[int, RequestReceived] = {}
        self.pending: set[int] = set()
        self.given_up: set[int] = set()
        self.outcomes: collections.Counter[int] = collections.Counter()
        self.pings: set[int] = set()
        self.answers_policy = 0
        self.reused_ids = _reused_request_ids(case)
        "Ids of requests the peer sends more than once: a second answer may be a new one's."
        self.answered_ahead: set[int] = set()
        "Reused ids whose next request took a second answer before it was reported."
        self.started = not case.wait_for_start
        self.open = False
        self.seen: list[Event] = []
        "Every event after the handshake, in order."

    # -- running -------------------------------------------------------------------

    def run(self) -> None:
        self.stats.cases += 1
        self._open()
        if self.open:
            for op in self.case.ops:
                self.apply(op)
        self.finish()

    def _open(self) -> None:
        case = self.case
        methods = METHODS if case.typed else None
        if self.role is Role.SERVER:
            self.conn = Connection.server(
                now=0.0, config=case.config, methods=methods, wait_for_start=case.wait_for_start
            )
            request = case.handshake if case.handshake is not None else _UPGRADE
            self._feed(request)
            events = self._events()
            upgrades = [e for e in events if isinstance(e, UpgradeRequested)]
            if upgrades:
                if len(upgrades) > 1 or not isinstance(events[0], UpgradeRequested):
                    raise Violation(f"upgrade events out of order: {events}")
                if self.conn.state is not State.UPGRADE_REQUESTED:
                    raise Violation(f"UpgradeRequested in state {self.conn.state}")
                self.conn.accept(now=self.now)
                head = self.conn.data_to_send()
                if not head.startswith(b"HTTP/1.1 101 "):
                    raise Violation(f"accepting wrote {head[:40]!r}")
                self.stats.handshakes["accepted"] += 1
            else:
                self._check_failed_handshake(events, server=True)
        else:
            self.conn = Connection.client(
                "fuzz.test:80",
                "/",
                now=0.0,
                config=case.config,
                methods=methods,
                wait_for_start=case.wait_for_start,
            )
            request = self.conn.data_to_send()
            if not request.startswith(b"GET / HTTP/1.1\r\n"):
                raise Violation(f"the upgrade request starts {request[:40]!r}")
            response = accept_for(request, case.handshake or RESPONSE_TEMPLATE)
            self._feed(response)
            events = self._events()
            if any(isinstance(e, HandshakeAccepted) for e in events):
                if not isinstance(events[0], HandshakeAccepted):
                    raise Violation(f"handshake events out of order: {events}")
                self.stats.handshakes["accepted"] += 1
            else:
                self._check_failed_handshake(events, server=False)
                return
            events = events[1:]
            self.open = True
            self._handle(events)
            self._check_output()
            return
        self.open = self.conn.state is State.OPEN
        if self.open:
            self._settle()
        elif self.conn.state is State.CLOSED:
            # Input that came with the upgrade request broke the protocol as soon as
            # `accept()` let it be read: the session ended in the same call.
            for event in self._events():
                if not isinstance(event, ConnectionClosed):
                    raise Violation(f"{event!r} in a session that failed as it opened")
                if event.code not in ENDING_CODES or not self.conn.should_close_transport:
                    raise Violation(f"a session that failed as it opened ended with {event!r}")
                self.closed = True

    def _check_failed_handshake(self, events: list[Event], *, server: bool) -> None:
        conn = self.conn
        allowed = (ConnectionClosed,) if server else (UpgradeRejected, ConnectionClosed)
        for event in events:
            if not isinstance(event, allowed):
                raise Violation(f"during a failed handshake: {event!r}")
            self.stats.merge_event(event)
        closed = [e for e in events if isinstance(e, ConnectionClosed)]
        out = conn.data_to_send()
        if server and out and not out.startswith(b"HTTP/1.1 "):
            raise Violation(f"a failed handshake answered {out[:40]!r}")
        if not server and out:
            raise Violation(f"a client wrote {out[:40]!r} after its upgrade request")
        if closed:
            if closed[0].code != 1006 or len(closed) > 1 or not conn.should_close_transport:
                raise Violation(f"a failed handshake ended with {closed}")
            self.closed = True
            self.stats.handshakes["failed"] += 1
        else:
            if conn.state not in (State.HANDSHAKING,):
                raise Violation(f"no handshake event, yet the state is {conn.state}")
            self.stats.handshakes["incomplete"] += 1

    def apply(self, op: Op) -> None:
        if isinstance(op, Feed):
            self._feed(op.data)
        elif isinstance(op, Frame):
            self._feed(encode_frame(op, to_server=self.role is Role.SERVER))
        elif isinstance(op, Message):
            to_server = self.role is Role.SERVER
            self._feed(b"".join(encode_frame(f, to_server=to_server) for f in message_frames(op)))
        elif isinstance(op, Advance):
            self._start()
            self.now += op.seconds
            timer = self.conn.get_timer()
            if timer is not None and timer <= self.now:
                self._guard(self.conn.handle_timer, self.now)
        elif isinstance(op, Local):
            self._start()
            self._local(op)
        else:
            self._guard(self.conn.receive_eof)
        self._settle()

    def finish(self) -> None:
        """Answer what waits, end the stream, and check the books."""
        if not self.open:
            if self.conn.state is not State.CLOSED:
                self._guard(self.conn.receive_eof)
                events = self._events()
                self._check_failed_handshake(events, server=self.role is Role.SERVER)
            if not self.closed:
                raise Violation("the connection did not end at the end of the stream")
            return
        self._start()
        self._settle()
        while self.deferred:  # an answer may release held input, and more requests
            for request_id in list(self.deferred):
                self._answer(request_id, 0)
            self._settle()
        if self.conn.state is State.OPEN:
            # Open: every request received got exactly one answer.
            for request_id, count in self.received.items():
                if self.answered[request_id] != count:
                    raise Violation(
                        f"request {request_id}: received {count} times, answered {self.answered[request_id]}"
                    )
        self._guard(self.conn.receive_eof)
        self._settle()
        if not self.closed or self.conn.state is not State.CLOSED:
            raise Violation("the connection did not end at the end of the stream")
        if self.conn.get_timer() is not None:
            raise Violation("a timer is armed after the end")
        for request_id in self.pending:
            raise Violation(f"our request {request_id} got no outcome")
        # After the end, input does nothing.
        self._guard(self.conn.receive_data, b"\x81\x00", self.now)
        self._guard(self.conn.handle_timer, self.now + 1000.0)
        if self.conn.events() or self.conn.data_to_send():
            raise Violation("input after the end made events or output")

    # -- plumbing ------------------------------------------------------------------

    def _guard(self, function: Any, *args: Any) -> None:
        try:
            function(*args)
        except Violation:
            raise
        except Exception as exc:
            raise Violation(f"{function.__name__} raised {exc!r}") from exc

    def _feed(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        chunk = self.case.chunk
        if not chunk:
            self._guard(self.conn.receive_data, data, self.now)
            if self.open:
                self._settle()
            return
        for start in range(0, len(data), chunk):
            self._guard(self.conn.receive_data, data[start : start + chunk], self.now)
            if self.open:
                self._settle()

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self._guard(self.conn.start)
            self._settle()  # what was held is delivered now, before anything else happens

    def _events(self) -> list[Event]:
        return self.conn.events()

    def _settle(self) -> None:
        """Handle events until there are none (answers may release held input), then
        check what was written."""
        while True:
            events = self._events()
            if not events:
                break
            self._handle(events)
        self._check_output()

    def _handle(self, events: Iterable[Event]) -> None:
        for event in events:
            self.stats.merge_event(event)
            self.seen.append(event)
            kind = type(event)
            if self.closed:
                raise Violation(f"{event!r} after ConnectionClosed")
            if kind in HANDSHAKE_EVENTS:
                raise Violation(f"{event!r} once open")
            if kind not in DOCUMENTED_EVENTS:
                raise Violation(f"an undocumented event {event!r}")
            if isinstance(event, ConnectionClosed):
                if event.code not in ENDING_CODES:
                    raise Violation(f"closed with code {event.code}")
                if not self.conn.should_close_transport or self.conn.state is not State.CLOSED:
                    raise Violation("ConnectionClosed, but the transport need not close")
                self.closed = True
                self.deferred.clear()
            elif isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, RequestRejected):
                if event.code not in (-32601, -32602):
                    raise Violation(f"rejected with {event.code}")
                self.received[event.request_id] += 1
            elif isinstance(event, CancelRequested):
                if event.request_id not in self.deferred:
                    raise Violation(f"CancelRequested for {event.request_id}, which is not in flight")
                del self.deferred[event.request_id]
            elif isinstance(event, OUTCOMES):
                request_id = event.request_id
                if request_id not in self.pending:
                    raise Violation(f"an outcome for request {request_id}, which is not pending: {event!r}")
                self.pending.discard(request_id)
                self.outcomes[request_id] += 1
                if isinstance(event, RequestTimedOut):
                    self.given_up.add(request_id)
            elif isinstance(event, UnexpectedResponseReceived):
                if event.request_id in self.pending:
                    raise Violation(f"an answer to pending request {event.request_id} called unexpected")
            elif isinstance(event, PongReceived):
                if event.ping_id not in self.pings:
                    raise Violation(f"a pong for ping {event.ping_id}, never sent or already answered")
                self.pings.discard(event.ping_id)

    def _on_request(self, event: RequestReceived) -> None:
        request_id = event.request_id
        if request_id in self.deferred:
            raise Violation(f"request {request_id} delivered while the same id is in flight")
        if self.case.typed and event.method not in METHOD_NAMES:
            raise Violation(f"a typed connection delivered a request for {event.method!r}")
        self.received[request_id] += 1
        if request_id in self.answered_ahead:
            self.answered_ahead.discard(request_id)
            return
        self.deferred[request_id] = event
        self.answers_policy += 1
        policy = (request_id + self.answers_policy) % 7
        if policy != 6:  # 6: answered later (or never, if the connection ends first)
            self._answer(request_id, policy)

    def _answer(self, request_id: int, policy: int) -> None:
        event = self.deferred.pop(request_id)
        conn = self.conn
        data = event.data
        result: Any = data
        if self.case.typed:
            if event.method == "add":
                result = data.a + data.b  # may not fit in 64 bits: answered -32603
            elif event.method == "shout":
                result = str(data).upper()
        try:
            if policy == 0:
                conn.send_outcome(request_id, result=result)
            elif policy == 1:
                conn.send_outcome(request_id, exception=ValueError("the handler failed"))
            elif policy == 2:
                conn.send_outcome(request_id, exception=MethodError("refused"))
            elif policy == 3:
                conn.send_outcome(request_id, result=math.nan)  # not JSON: -32603
            elif policy == 4:
                conn.send_outcome(request_id, exception=MethodError(object()))  # not JSON: -32603
            else:
                try:
                    conn.send_response(request_id, result)
                except EncodingError as exc:  # unlike send_outcome; the request still waits
                    conn.send_outcome(request_id, exception=exc)
                try:  # a second answer is refused (the wire check counts what is sent)
                    conn.send_response(request_id, result)
                except LocalProtocolError:
                    pass
                else:
                    # Unless the peer reused the id: answering the first request may have
                    # let the engine take in the second one (held input), not yet reported.
                    if conn.state is State.OPEN and request_id not in self.reused_ids:
                        raise Violation("a second answer to one request was accepted")
                    self.answered_ahead.add(request_id)
        except Violation:
            raise
        except Exception as exc:
            raise Violation(f"answering request {request_id} (policy {policy}) raised {exc!r}") from exc

    def _local(self, op: Local) -> None:
        conn = self.conn
        action, arg = op.action, op.arg
        try:
            if action is Action.REQUEST or action is Action.TYPED_REQUEST:
                method: Method[Any, Any, Any] | str = (
                    METHODS[arg % 3] if action is Action.TYPED_REQUEST else "echo"
                )
                data: Any = _REQUEST_DATA[method.name if isinstance(method, Method) else "echo"]
                timeout = (None, 0.5, 5.0)[arg % 3]
                request_id = conn.send_request(method, data, now=self.now, timeout=timeout)
                if request_id in self.pending or not 1 <= request_id <= MAX_ID:
                    raise Violation(f"send_request gave id {request_id}")
                self.pending.add(request_id)
            elif action is Action.NOTIFY:
                conn.send_notification(tick if arg % 2 else "note", arg)
            elif action is Action.PING:
                self.pings.add(conn.send_ping())
            elif action is Action.CANCEL:
                if self.pending:
                    request_id = sorted(self.pending)[arg % len(self.pending)]
                    if not conn.cancel_request(request_id):
                        raise Violation(f"cancel_request({request_id}) found nothing pending")
                    self.pending.discard(request_id)
                    self.given_up.add(request_id)
            elif action is Action.ANSWER:
                if self.deferred:
                    request_id = sorted(self.deferred)[arg % len(self.deferred)]
                    self._answer(request_id, arg % 6)
            else:
                code = LOCAL_CLOSE_CODES[arg % len(LOCAL_CLOSE_CODES)]
                conn.close(code, "bye" if arg % 2 else "", now=self.now)
        except SessionClosed:
            if conn.state is State.OPEN:
                raise Violation(f"{action.value} raised SessionClosed on an open connection") from None
        except TooManyPendingRequests:
            if len(self.pending) < conn.config.max_pending_requests:
                raise Violation("TooManyPendingRequests below the bound") from None
        except Violation:
            raise
        except Exception as exc:
            raise Violation(f"{action.value} raised {exc!r}") from exc

    # -- output --------------------------------------------------------------------

    def _check_output(self) -> None:
        data = self.conn.data_to_send()
        if not data:
            return
        client = self.role is Role.CLIENT
        for frame in parse_frames(data):
            opcode, payload = frame.opcode, frame.payload
            self.stats.frames_out += 1
            if self.close_frame_sent:
                raise Violation(f"a frame (opcode {opcode}) after our close frame")
            if frame.masked != client:
                raise Violation(f"a {'client' if client else 'server'} frame with mask={frame.masked}")
            if frame.rsv or not frame.fin:
                raise Violation(f"RSV bits {frame.rsv:#x} or a fragment (fin={frame.fin})")
            if opcode == CLOSE:
                self.close_frame_sent = True
                self._check_close_frame(payload)
            elif opcode in (PING, PONG):
                if len(payload) > 125:
                    raise Violation("a control frame over 125 bytes")
            elif opcode == TEXT:
                self._check_message(payload)
            else:
                raise Violation(f"a frame with opcode {opcode}")

    def _check_close_frame(self, payload: bytes) -> None:
        if len(payload) == 1 or len(payload) > 125:
            raise Violation(f"a close frame of {len(payload)} bytes")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not _sendable_close_code(code):
                raise Violation(f"a close frame with code {code}")
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise Violation("a close reason that is not UTF-8") from None

    def _check_message(self, payload: bytes) -> None:
        try:
            message = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Violation(f"a text frame that is not UTF-8 JSON: {exc}") from None
        if type(message) is not dict or message.get("type") not in KINDS:
            raise Violation(f"not a protocol message: {payload[:80]!r}")
        kind = message["type"]
        if kind in ("notification", "request") and (
            type(message.get("method")) is not str or "data" not in message
        ):
            raise Violation(f"a malformed {kind}: {payload[:80]!r}")
        if kind == "notification":
            return
        request_id = message.get("id")
        if type(request_id) is not int or not 0 <= request_id <= MAX_ID:
            raise Violation(f"a {kind} with id {request_id!r}")
        if kind == "request":
            if request_id == 0:
                raise Violation("a request with id 0")
            return
        if ("result" if kind == "response" else "error") not in message:
            raise Violation(f"a {kind} without its value: {payload[:80]!r}")
        self.answered[request_id] += 1
        if self.answered[request_id] > self.received[request_id]:
            raise Violation(
                f"answer {self.answered[request_id]} to request {request_id}, "
                f"received {self.received[request_id]} times"
            )
        if kind == "errorresponse":
            error = message["error"]
            exposed = self.case.config.expose_internal_errors
            internal = type(error) is dict and error.get("code") == -32603
            if internal and not exposed and error.get("message") != "internal error":
                raise Violation(f"an internal error leaks its text: {error!r}")


_REQUEST_DATA: dict[str, Any] = {
    "echo": {"x": [1, 2.5, "é", None, True]},
    "add": AddArgs(2, 3),
    "shout": "hi",
}

_UPGRADE = wire.upgrade_request("fuzz.test:80")
"A valid upgrade request (session-rs's, as captured in docs/protocol.md)."


def upgrade_request() -> bytes:
    return _UPGRADE


ACCEPT_TOKEN = b"@ACCEPT@"
"Stands in a fuzzed 101 for the `Sec-WebSocket-Accept` value of the actual request."
RESPONSE_TEMPLATE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + ACCEPT_TOKEN + b"\r\n\r\n"
)


def accept_for(request: bytes, template: bytes = RESPONSE_TEMPLATE) -> bytes:
    """`template` (a valid 101 by default) answering the client's upgrade request."""
    return template.replace(ACCEPT_TOKEN, wire.accept_token(wire.request_key(request)))


def _reused_request_ids(case: Case) -> set[int]:
    seen: collections.Counter[int] = collections.Counter()
    for op in case.ops:
        if isinstance(op, Message):
            try:
                message = json.loads(op.text)
            except (ValueError, RecursionError):  # not JSON, or nested too deep for json
                continue
            if isinstance(message, dict) and message.get("type") == "request":
                request_id = message.get("id")
                if isinstance(request_id, int):
                    seen[request_id] += 1
    return {request_id for request_id, count in seen.items() if count > 1}


def run_case(case: Case, *, stats: Stats = STATS, strict: bool = False) -> Harness:
    """Run one case and return its harness; raises `Violation` if the connection breaks a
    promise.

    A known bug (`KNOWN_BUGS`) is counted in `stats.known_bugs` and ends the case quietly,
    unless `strict`: then it is a `Violation` too.
    """
    harness = Harness(case, stats=stats)
    try:
        harness.run()
    except KnownBug as bug:
        if strict:
            raise Violation(str(bug)) from bug
        stats.known_bugs[bug.name] += 1
    return harness
