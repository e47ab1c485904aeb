"""The one seam to wsproto (and h11): the WebSocket handshake and framing.

Nothing outside this module sees a wsproto or h11 type. What arrives comes out as the typed
records of `_frames` (`TextReceived`, `CloseReceived`, `UpgradeReceived`, ...).

wsproto does the handshake, control frames, fragmented and binary messages, the close
handshake and every validation. The one exception is the shape that carries nearly all of
this protocol's traffic: a complete, unfragmented, unextended text frame, masked as its
direction requires (the only shape this protocol sends, `docs/protocol.md`). Those are
framed and parsed here, because wsproto's pure-Python framing is most of the cost of a
round trip (see `benchmarks/CORE-RESULTS.md`). The split is exact: every frame that is not
of that shape, and every frame while a fragmented message is open, goes to wsproto whole
and in order, so wsproto's own state always stands at a frame boundary and its checks apply
to everything it sees.

Which wsproto API this uses, and why. Only what wsproto documents as its API (which its
semantic versioning covers): `wsproto.WSConnection` for the handshake (`send`,
`receive_data`, `events`, `state`), then, once open, a fresh frames-only
`wsproto.connection.Connection` (documented for connections whose handshake was done
elsewhere), so that the handshake's h11 and wsproto objects are let go and an idle session
keeps only what framing needs; the classes of `wsproto.events`,
`wsproto.frame_protocol.CloseReason`, and `wsproto.utilities.RemoteProtocolError` with its
`event_hint` (the response wsproto suggests for a bad upgrade request). No extension is ever
offered or accepted, so the fresh connection is the one the handshake would have built.
Tested with wsproto 1.3.2 and h11 0.16.0; `pyproject.toml` bounds both to those minor
versions.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator, Iterator, Sequence
from typing import Any

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as WsFrames
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError as _WsRemoteError

from ._frames import (
    BinaryReceived,
    CloseReceived,
    FrameEvent,
    FramingFailed,
    HandshakeFailed,
    PingReceived,
    PongReceived,
    RefusalBodyReceived,
    TextReceived,
    UpgradeAccepted,
    UpgradeReceived,
    UpgradeRefused,
    WsEvent,
)
from ._mask import apply_mask

_STILL_READING = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_CAN_CLOSE = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)

#: The answer to a plain `GET` with no upgrade, as session-rs gives it.
PLAIN_GET_BODY = b"OK"
#: The longest HTTP head (request or response) read before giving up, as h11's default.
_MAX_HEAD = 16 * 1024
#: The largest frame parsed here when messages have no size limit; a larger one streams
#: through wsproto. With a limit, frames up to the limit are parsed here (a frame is held
#: whole until complete, which the limit bounds anyway).
FAST_FRAME_LIMIT = 64 << 20
_FIN_TEXT = 0x81  # FIN set, no RSV bits, opcode 1 (text)
_MASK_BIT = 0x80
_INVALID_UTF8 = 1007
_CLOSE_OPCODE = 0x8
#: Payloads from this size on are unmasked and decoded through a memoryview, in place; a
#: smaller one is sliced out (cheaper than making a view).
_VIEW_FROM = 4096


class WebSocket:
    """A WebSocket endpoint: handshake first, then frames."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_client",
        "_frames",
        "_handshake",
        "_head",
        "_head_done",
        "_in_message",
        "_needed",
        "_partial",
        "_pending_response",
        "_skip",
        "_to_wsproto",
        "fast_limit",
        "leftover",
    )

    def __init__(self, *, client: bool, max_message_size: int | None = None) -> None:
        self._client = client
        # The handshake's wsproto (and h11) connection until open, then frames only.
        self._handshake: WSConnection | None = WSConnection(self._type())
        self._frames: WsFrames | None = None
        self._head = b""
        self._head_done = False
        self._pending_response = b""
        self.leftover = b""
        "Server: bytes that followed the upgrade request, for the session once accepted."
        # Framing of the open connection. An incomplete frame waits in the pieces it came
        # in, joined once it is complete (joining at every read would copy a large frame
        # over and over).
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._needed = 0  # bytes that complete the frame at the start of the buffer
        self._to_wsproto = 0  # bytes of the current frame still owed to wsproto
        self._in_message = False  # wsproto holds a fragmented message that is not finished
        # Discarding, after the connection ended without the peer's close frame (see
        # `discard`): payload bytes still to skip, and the start of a header cut by a read.
        self._skip = 0
        self._partial = b""
        self.fast_limit = (
            FAST_FRAME_LIMIT if max_message_size is None else min(FAST_FRAME_LIMIT, max_message_size)
        )
        "Frames up to this size are parsed here; larger ones stream through wsproto."

    # -- handshake -------------------------------------------------------------------

    def _type(self) -> ConnectionType:
        return ConnectionType.CLIENT if self._client else ConnectionType.SERVER

    def _handshake_done(self) -> None:
        # Let go of the handshake's objects (h11's parser and buffers, about a kilobyte):
        # an idle session keeps only a frames-only wsproto connection. No extension is
        # negotiated and h11 was given nothing past the head, so this fresh one is the
        # very connection wsproto would have built.
        self._frames = WsFrames(self._type())
        self._handshake = None
        self._head = b""

    def _opening(self) -> WSConnection:
        handshake = self._handshake
        if handshake is None:  # pragma: no cover - the connection's state prevents it
            raise RuntimeError("the handshake is over")
        return handshake

    def _open_frames(self) -> WsFrames:
        frames = self._frames
        if frames is None:  # pragma: no cover - the connection's state prevents it
            raise RuntimeError("the handshake is not over")
        return frames

    def start_client(
        self, host: str, target: str, headers: Sequence[tuple[bytes, bytes]], subprotocols: Sequence[str]
    ) -> bytes:
        return self._opening().send(
            Request(host=host, target=target, extra_headers=list(headers), subprotocols=list(subprotocols))
        )

    def accept(self, subprotocol: str | None, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        data = self._opening().send(AcceptConnection(subprotocol=subprotocol, extra_headers=list(headers)))
        self._handshake_done()
        return data

    def reject(self, status_code: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
        # A Content-Length rather than chunked encoding: simple clients read it more easily.
        fields = list(headers)
        if not any(name.lower() == b"content-length" for name, _ in fields):
            fields.append((b"content-length", b"%d" % len(body)))
        return self._send_reject(
            RejectConnection(status_code=status_code, headers=fields, has_body=True), body
        )

    def _send_reject(self, head: RejectConnection, body: bytes) -> bytes:
        handshake = self._opening()
        data = handshake.send(head)
        if head.has_body:
            data += handshake.send(RejectData(data=body, body_finished=True))
        return data

    def take_handshake_response(self) -> bytes:
        """Bytes answering a failed handshake (server side), once."""
        data, self._pending_response = self._pending_response, b""
        return data

    def take_leftover(self) -> bytes:
        """Server: the bytes a client sent after its upgrade request, once."""
        data, self.leftover = self.leftover, b""
        return data

    # -- input -----------------------------------------------------------------------

    def receive(self, data: bytes) -> Generator[WsEvent, None, None]:
        """Feed bytes; iterate for what they complete.

        A whole text message that came in one plain frame (nearly every message) is given
        as its `str` alone: no record is built for it.
        """
        frames = self._frames
        if frames is None:
            return self._receive_opening(data)
        # The frames' own generator, not one wrapping it: one layer less for every message.
        return self._receive_frames(frames, data)

    def receive_eof(self) -> Generator[WsEvent, None, None]:
        """The stream ended during the handshake: a refusal's body may end with it."""
        return self._receive_opening(None)

    def _receive_opening(self, data: bytes | None) -> Generator[WsEvent, None, None]:
        yield from self._receive_handshake(data)
        frames = self._frames
        if frames is None or not self._client:
            return
        data, self.leftover = self.leftover, b""  # frames that came with the 101
        if data:
            yield from self._receive_frames(frames, data)

    def _receive_frames(self, frames: WsFrames, data: bytes) -> Generator[FrameEvent, None, None]:
        if self._buffer:
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered < self._needed:
                return
            data = b"".join(self._buffer)
            self._buffer, self._buffered, self._needed = [], 0, 0
        expect_mask = 0 if self._client else _MASK_BIT
        limit = self.fast_limit
        pos, end = 0, len(data)
        # Closed while suspended (the connection stops reading mid-way, `Reader.stop`): what
        # was not read yet is kept as if the input had ended there, so that `discard` can
        # go on from the exact place in the stream. A `try` costs nothing until it catches.
        try:
            while pos < end:
                if self._to_wsproto:
                    take = min(self._to_wsproto, end - pos)
                    frames.receive_data(data[pos : pos + take])
                    pos += take
                    self._to_wsproto -= take
                    yield from self._wsproto_events(frames)
                    continue
                # RFC 6455 5.2: the frame header.
                if end - pos < 2:
                    break
                first, second = data[pos], data[pos + 1]
                length = second & 0x7F
                head = 2
                minimal = True  # RFC 6455 5.2: "the minimal number of bytes MUST be used"
                if length == 126:
                    if end - pos < 4:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    head = 4
                    minimal = length >= 126
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                    head = 10
                    minimal = length >= 1 << 16
                masked = second & _MASK_BIT
                if masked:
                    head += 4
                if (
                    first == _FIN_TEXT
                    and masked == expect_mask
                    and length <= limit
                    and minimal
                    and not self._in_message
                ):
                    stop = pos + head + length
                    if stop > end:
                        self._needed = stop - pos  # the rest, at most `limit` bytes, is on its way
                        break
                    start = pos + head
                    pos = stop
                    try:
                        if length < _VIEW_FROM:
                            if masked:
                                text = apply_mask(data[start:stop], data[start - 4 : start]).decode("utf-8")
                            else:
                                text = data[start:stop].decode("utf-8")
                        else:  # a large payload: read in place, not copied out first
                            view = memoryview(data)[start:stop]
                            if masked:
                                text = apply_mask(view, data[start - 4 : start]).decode("utf-8")
                            else:
                                text = str(view, "utf-8")
                    except UnicodeDecodeError:
                        text = None  # reported below, not inside `except` (`_receive_handshake`)
                    if text is None:
                        yield FramingFailed(_INVALID_UTF8, "invalid UTF-8 in a text message")
                        return
                    yield text
                    continue
                # Any other frame goes to wsproto whole, as it arrives.
                opcode = first & 0x0F
                if opcode < 8:  # a data frame opens or continues a message; FIN ends it
                    self._in_message = not first & 0x80
                self._to_wsproto = head + length
        except GeneratorExit:
            if pos < end:
                self._buffer.append(data[pos:] if pos else data)
                self._buffered = end - pos
            raise
        if pos < end:
            # `data` itself when whole: the compiled build copies even a full slice.
            self._buffer.append(data[pos:] if pos else data)
            self._buffered = end - pos

    def _wsproto_events(self, frames: WsFrames) -> Iterator[FrameEvent]:
        for event in frames.events():
            if isinstance(event, TextMessage):
                yield TextReceived(event.data, event.message_finished)
            elif isinstance(event, BytesMessage):
                yield BinaryReceived(len(event.data), event.message_finished)
            elif isinstance(event, Ping | Pong):
                # wsproto may hand over a bytearray where it declares `bytes`: read it untyped
                # (see `_receive_handshake`).
                untyped: Any = event
                if isinstance(event, Ping):
                    yield PingReceived(bytes(untyped.payload))
                else:
                    yield PongReceived(bytes(untyped.payload))
            elif isinstance(event, CloseConnection):
                # wsproto reports a frame it cannot parse as a CloseConnection too, without
                # leaving the OPEN state; a real close frame moves it to *_CLOSING/CLOSED.
                if frames.state in _STILL_READING:
                    yield FramingFailed(int(event.code), event.reason or "")
                else:
                    yield CloseReceived(int(event.code), event.reason or "")

    # -- discarding ------------------------------------------------------------------

    def discard_from_here(self) -> bool:
        """Stop parsing: from here on input is only skipped through (`discard`), looking
        for the peer's close frame. Used once the connection ended without it, while the
        peer may still be sending (the rest of a message refused as too big, say).

        It starts at the exact place reading stopped: in the middle of a frame given to
        wsproto (whose state no longer matters: it may have failed), or at a frame header,
        with what was read but not parsed yet. Returns whether that already holds the
        start of a close frame.
        """
        self._skip, self._to_wsproto = self._to_wsproto, 0
        self._frames = None  # wsproto's framing is over: let it go
        rest = b"".join(self._buffer)
        self._buffer, self._buffered, self._needed = [], 0, 0
        return self.discard(rest)

    def discard(self, data: bytes) -> bool:
        """Skip `data` frame by frame, by the headers alone (payloads are neither kept nor
        unmasked); return whether a close frame begins in it. Only a header cut by the
        end of `data` (at most 13 bytes) is kept for the next call.
        """
        pos = self._skip
        end = len(data)
        if pos >= end:
            self._skip = pos - end
            return False
        if self._partial:  # a cut header: `_skip` was 0
            data = self._partial + data
            end = len(data)
            self._partial = b""
        while end - pos >= 2:
            if data[pos] & 0x0F == _CLOSE_OPCODE:
                return True
            length = data[pos + 1] & 0x7F
            head = 2
            if length == 126:
                head = 4
            elif length == 127:
                head = 10
            if end - pos < head:
                break
            if head > 2:
                length = int.from_bytes(data[pos + 2 : pos + head], "big")
            if data[pos + 1] & _MASK_BIT:
                head += 4
            pos += head + length
        if pos > end:
            self._skip = pos - end
        else:
            self._skip = 0
            self._partial = data[pos:]
        return False

    def _receive_handshake(self, data: bytes | None) -> Iterator[WsEvent]:
        # Give h11 the HTTP head and nothing after it: wsproto would drop frames that follow
        # an upgrade request, and would keep frames that follow a 101 out of our reach.
        rest = b""
        chunks: list[bytes | None] = [data]
        if not self._head_done:
            self._head += data or b""
            end = self._head.find(b"\r\n\r\n")
            if end < 0 and data is not None and len(self._head) <= _MAX_HEAD:
                return
            self._head_done = True
            if end >= 0:
                chunks, rest = [self._head[: end + 4]], self._head[end + 4 :]
            else:  # the stream ended inside the head, or the head is too big: h11 says so
                chunks = [self._head, data] if self._head else [data]
        handshake = self._opening()
        failure: HandshakeFailed | None = None
        try:
            for chunk in chunks:
                handshake.receive_data(chunk)
            events = list(handshake.events())
            if rest and self._client and handshake.state is not ConnectionState.OPEN:
                handshake.receive_data(rest)  # not a 101: the rest is the response's body
                events += handshake.events()
                rest = b""
        except Exception as exc:
            # wsproto's RemoteProtocolError, and what slips past it: wsproto decodes some
            # header values as ASCII and lets UnicodeDecodeError out. Either way the
            # peer's handshake is bad, never our caller's problem.
            if not self._client:
                hint = exc.event_hint if isinstance(exc, _WsRemoteError) else None
                self._pending_response = self._answer_bad_request(hint)
            failure = HandshakeFailed(str(exc) if isinstance(exc, _WsRemoteError) else "malformed header")
        if failure is not None:
            # Yielded here, never inside an `except` block: a compiled (mypyc) generator that
            # yields there leaves the exception set as the one being handled once suspended,
            # and every later exception in the thread would chain onto it (and keep it alive).
            yield failure
            return
        self.leftover = rest
        if self._client and handshake.state is ConnectionState.OPEN:
            self._handshake_done()
        for event in events:
            if isinstance(event, Request):
                yield UpgradeReceived(
                    event.target, _headers(event.extra_headers), event.host, tuple(event.subprotocols)
                )
            elif isinstance(event, AcceptConnection):
                yield UpgradeAccepted(event.subprotocol, _headers(event.extra_headers))
            elif isinstance(event, RejectConnection):
                yield UpgradeRefused(event.status_code, _headers(event.headers), event.has_body)
            elif isinstance(event, RejectData):
                # h11 hands over a bytearray where wsproto declares `bytes`: read it untyped,
                # or the compiled build would check it as `bytes` and raise.
                untyped: Any = event
                yield RefusalBodyReceived(bytes(untyped.data), event.body_finished)

    def _answer_bad_request(self, hint: object) -> bytes:
        if self._is_plain_get():
            head = RejectConnection(
                status_code=200,
                headers=[(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(PLAIN_GET_BODY))],
                has_body=True,
            )
            body = PLAIN_GET_BODY
        else:
            head = hint if isinstance(hint, RejectConnection) else RejectConnection(status_code=400)
            body = b""
        try:
            return self._send_reject(head, body)
        except Exception:  # h11 may refuse to answer a request it could not parse at all
            return b""

    def _is_plain_get(self) -> bool:
        parser = h11.Connection(h11.SERVER)
        parser.receive_data(self._head)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return False
        if not isinstance(event, h11.Request) or event.method != b"GET":
            return False
        return not any(name == b"upgrade" for name, _ in event.headers)

    # -- output ----------------------------------------------------------------------

    def send_text(self, payload: bytes) -> bytes:
        """One unfragmented text frame holding `payload` (valid UTF-8), masked by a client."""
        length = len(payload)
        mask_bit = _MASK_BIT if self._client else 0
        if length < 126:
            header = bytes((_FIN_TEXT, mask_bit | length))
        elif length < 1 << 16:
            header = struct.pack("!BBH", _FIN_TEXT, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", _FIN_TEXT, mask_bit | 127, length)
        if not self._client:
            return header + payload
        # RFC 6455 5.3: a fresh, unpredictable masking key for every frame.
        mask = os.urandom(4)
        return header + mask + apply_mask(payload, mask)

    def ping(self, payload: bytes) -> bytes:
        """A ping frame."""
        return self._open_frames().send(Ping(payload=payload))

    def pong(self, payload: bytes) -> bytes:
        """A pong frame."""
        return self._open_frames().send(Pong(payload=payload))

    def close(self, code: int | None, reason: str) -> bytes:
        """A close frame; `code=None` (or 1005) sends one without a status code."""
        if code is None or code == CloseReason.NO_STATUS_RCVD:
            # wsproto omits the status code only for this very enum member.
            return self._open_frames().send(CloseConnection(code=CloseReason.NO_STATUS_RCVD))
        return self._open_frames().send(CloseConnection(code=code, reason=reason or None))

    @property
    def can_send_close(self) -> bool:
        """Whether a close frame may still be sent (the handshake is over, none sent yet)."""
        return self._frames is not None and self._frames.state in _CAN_CLOSE


def _headers(headers: object) -> tuple[tuple[bytes, bytes], ...]:
    # wsproto types its header lists loosely (`Headers` may hold `str` pairs it was given);
    # what it parsed from the wire is always `bytes` pairs.
    return tuple(headers)  # type: ignore[arg-type]
