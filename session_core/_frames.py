"""What the WebSocket layer (`_ws.WebSocket`) gives the connection, and message reassembly.

The seam between the framing and the session is these small immutable records: the
connection dispatches on their type and mypy checks every field on both sides. They are
`NamedTuple`s: immutable and without a `__dict__`. The one event with no record is the hot
path's: a whole text message that came in one plain frame, nearly every message, is given
as its `str` alone (`type(event) is str`), because building a record for each one
measurably slows a round trip.

`MessageAssembler` joins the fragments of a message and enforces the message size limit
while they stream in, so that a huge message is refused before it is whole.
"""

from __future__ import annotations

from typing import NamedTuple

from ._events import Headers

# -- the handshake -------------------------------------------------------------------------


class UpgradeReceived(NamedTuple):
    """Server: a valid upgrade request arrived."""

    path: str
    headers: Headers
    host: str
    subprotocols: tuple[str, ...]


class UpgradeAccepted(NamedTuple):
    """Client: the server answered 101; frames follow."""

    subprotocol: str | None
    headers: Headers


class UpgradeRefused(NamedTuple):
    """Client: the server answered with another status; a body may follow."""

    status_code: int
    headers: Headers
    has_body: bool


class RefusalBodyReceived(NamedTuple):
    """Client: a piece of the refusal's body."""

    data: bytes
    finished: bool


class HandshakeFailed(NamedTuple):
    """The peer's handshake is not valid HTTP or not a valid WebSocket upgrade."""

    reason: str


# -- the open connection -------------------------------------------------------------------


class TextReceived(NamedTuple):
    """Text that went through wsproto: a whole message, or a fragment of one (`finished`
    is then false). A whole message in one plain frame comes as a bare `str` instead."""

    text: str
    finished: bool


class BinaryReceived(NamedTuple):
    """Binary data, of which only the size matters (version 1 carries nothing in it)."""

    size: int
    finished: bool


class PingReceived(NamedTuple):
    """A ping frame; it deserves a pong with the same payload."""

    payload: bytes


class PongReceived(NamedTuple):
    """A pong frame."""

    payload: bytes


class CloseReceived(NamedTuple):
    """The peer's close frame (or the end of the stream after ours)."""

    code: int
    reason: str


class FramingFailed(NamedTuple):
    """The peer broke RFC 6455; fail the connection with `code`."""

    code: int
    reason: str


HandshakeEvent = UpgradeReceived | UpgradeAccepted | UpgradeRefused | RefusalBodyReceived | HandshakeFailed
FrameRecord = TextReceived | BinaryReceived | PingReceived | PongReceived | CloseReceived | FramingFailed
FrameEvent = str | FrameRecord
WsEvent = HandshakeEvent | FrameEvent
#: What changes a connection's life: the reader hands these back to it.
LifeEvent = HandshakeEvent | CloseReceived | FramingFailed


# -- reassembly ----------------------------------------------------------------------------


class MessageTooBig(Exception):
    """A message grew over the size limit (the connection fails with 1009)."""


class MessageAssembler:
    """Joins a message's fragments and counts its size against the limit."""

    __slots__ = ("_limit", "_parts", "_size")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._parts: list[str] = []
        self._size = 0  # bytes of the message so far, counted only when there is a limit

    def add_text(self, text: str, finished: bool) -> str | None:
        """Add a piece of text; the whole message once `finished`, else `None`.

        Raises:
            MessageTooBig: the message is over the limit.
        """
        limit = self._limit
        if finished and not self._parts and (limit is None or len(text) * 4 <= limit):
            self._size = 0  # whole, and small enough however many bytes a character takes
            return text
        if limit is not None:
            # `len` of an ASCII str is its UTF-8 size.
            self._size += len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
            if self._size > limit:
                raise MessageTooBig(f"message over {limit} bytes")
        if not finished:
            self._parts.append(text)
            return None
        if self._parts:
            self._parts.append(text)
            text = "".join(self._parts)
            self._parts.clear()
        self._size = 0
        return text

    def add_binary(self, size: int, finished: bool) -> bool:
        """Count `size` bytes of a binary message; whether the message is now whole.

        Raises:
            MessageTooBig: the message is over the limit.
        """
        limit = self._limit
        self._size += size
        if limit is not None and self._size > limit:
            raise MessageTooBig(f"message over {limit} bytes")
        if finished:
            self._size = 0
        return finished

    def clear(self) -> None:
        """Forget a message in progress (the connection ended)."""
        self._parts.clear()
