"""Reading: what the WebSocket layer gives, handled until the input is used up or reading
must pause, and the input held back meanwhile.

`Reader` owns the receiving side of the connection's `WebSocket`, the joining of fragments
(`_frames.MessageAssembler`), and the input held while reading is paused. It routes each
whole message to `_incoming` (requests, notifications) or `_outgoing` (answers), answers
pings and reports pongs. What changes the connection's life (the handshake's events, a
close frame, a broken frame, a message over the size limit) it hands back to the
connection, one at a time, to be handled before reading goes on.

Reading pauses (`paused`) when the peer's requests in flight reach
`Config.max_incoming_requests`, while a server's upgrade waits for a decision, and after the
handshake until `start()` when asked to; the rest of the input then waits here.
"""

from __future__ import annotations

from collections.abc import Generator

from . import _messages
from ._config import MESSAGE_TOO_BIG, Config
from ._events import Event, InvalidMessageReceived, PongReceived
from ._frames import (
    BinaryReceived,
    FrameRecord,
    FramingFailed,
    HandshakeEvent,
    LifeEvent,
    MessageAssembler,
    MessageTooBig,
    PingReceived,
    TextReceived,
    WsEvent,
)
from ._frames import PongReceived as PongFrame
from ._incoming import IncomingRequests
from ._keepalive import Keepalive
from ._messages import InvalidMessage, Kind
from ._outgoing import OutgoingRequests
from ._state import State
from ._ws import WebSocket


class Reader:
    """The reading of one connection; see the module's documentation."""

    __slots__ = (
        "_events",
        "_held",
        "_in_flight",
        "_incoming",
        "_keepalive",
        "_limit",
        "_message",
        "_open",
        "_out",
        "_outgoing",
        "_ws",
        "holding",
        "parked",
        "wait_for_start",
    )

    def __init__(
        self,
        config: Config,
        ws: WebSocket,
        incoming: IncomingRequests,
        outgoing: OutgoingRequests,
        keepalive: Keepalive,
        out: list[bytes],
        events: list[Event],
        *,
        wait_for_start: bool,
    ) -> None:
        self._ws, self._out, self._events = ws, out, events
        self._incoming, self._outgoing, self._keepalive = incoming, outgoing, keepalive
        # Bound once: the pause check runs after every event.
        self._in_flight = incoming.in_flight
        self._limit = config.max_incoming_requests
        self._message = MessageAssembler(config.max_message_size)
        self._held = bytearray()
        self.parked: Generator[WsEvent, None, None] | None = None
        "The events of input read only in part: at the bound, before `start()`, or a life event."
        self._open = False  # messages are for us: the session is open (not closing)
        self.wait_for_start = wait_for_start
        "Hold what arrives once open, until the connection's `start()`."
        self.holding = False
        "Whatever arrives is held: an upgrade waits for a decision, or for `start()`."

    @property
    def paused(self) -> bool:
        """Whether input would only be held (see `Connection.reading_paused`)."""
        return self.parked is not None or self.holding

    def track(self, state: State) -> None:
        """The connection moved to `state`."""
        self._open = state is State.OPEN
        self.holding = state is State.UPGRADE_REQUESTED or (self.wait_for_start and self._open)

    def hold(self, data: bytes | bytearray) -> None:
        """Keep `data` until reading goes on."""
        self._held += data

    def clear(self) -> None:
        """Drop everything held (the connection ended)."""
        self._held.clear()
        self.parked = None
        self._message.clear()

    def stop(self) -> bytes:
        """Stop reading for good, mid-way if need be; the input held back, unread.

        What a suspended read had not parsed yet stays with the `WebSocket` (closing the
        iteration keeps it there), ahead of what this returns: together they are the rest
        of the stream, in order, for `WebSocket.discard`.
        """
        parked, self.parked = self.parked, None
        if parked is not None:
            parked.close()
        held = bytes(self._held)
        self.clear()
        return held

    def read(self, data: bytes | None = None, *, eof: bool = False) -> LifeEvent | None:
        """Read `data` (or the end of the stream with `eof`), else go on with the input
        held back; returns the next event for the connection to handle, after which it
        calls again, or `None` when reading is done or paused."""
        if self.holding:
            return None
        events = self.parked
        if events is not None and len(self._in_flight) >= self._limit:
            return None  # still at the bound
        # Taken first, so that an answer written meanwhile never resumes this iteration.
        self.parked = None
        if eof:
            events = self._ws.receive_eof()
        elif data is not None:
            events = self._ws.receive(data)
        in_flight, limit = self._in_flight, self._limit
        while True:
            if events is not None:
                for event in events:
                    if isinstance(event, str):  # a whole text message: nearly every event
                        if self._open:
                            self._handle_message(event)
                    else:
                        life = self._handle(event)
                        if life is not None:
                            self.parked = events
                            return life
                    if len(in_flight) >= limit:
                        self.parked = events
                        return None
            if not self._held or self.holding:
                return None
            events = self._ws.receive(bytes(self._held))
            self._held.clear()

    def _handle(self, event: HandshakeEvent | FrameRecord) -> LifeEvent | None:
        # Frames handled here; what changes the connection's life is returned.
        if isinstance(event, TextReceived):
            if not self._open:
                return None  # closing: what the peer still sends is not for us
            try:
                whole = self._message.add_text(event.text, event.finished)
            except MessageTooBig as exc:
                return FramingFailed(MESSAGE_TOO_BIG, str(exc))
            if whole is not None:
                self._handle_message(whole)
        elif isinstance(event, BinaryReceived):
            # Binary messages carry nothing in version 1; they still count against the limit.
            try:
                whole_binary = self._message.add_binary(event.size, event.finished)
            except MessageTooBig as exc:
                return FramingFailed(MESSAGE_TOO_BIG, str(exc))
            if whole_binary:
                self._events.append(InvalidMessageReceived(reason="binary message ignored"))
        elif isinstance(event, PingReceived):
            if self._open:
                self._out.append(self._ws.pong(event.payload))
        elif isinstance(event, PongFrame):
            for ping_id in self._keepalive.handle_pong(event.payload):
                self._events.append(PongReceived(ping_id=ping_id))
        else:
            return event
        return None

    def _handle_message(self, text: str) -> None:
        # A whole text message. One that came as a bare `str` needs no joining or counting:
        # it came in one frame, no fragmented message was open, and `_ws` gives a frame
        # this way only when its payload is within the message size limit.
        try:
            kind, request_id, method, payload = _messages.parse(text)
        except InvalidMessage as exc:
            self._events.append(InvalidMessageReceived(reason=str(exc)))
            return
        if kind is Kind.REQUEST:
            self._incoming.receive_request(request_id, method, payload)
        elif kind is Kind.NOTIFICATION:
            self._incoming.receive_notification(method, payload)
        else:
            self._outgoing.receive_answer(kind, request_id, payload)
