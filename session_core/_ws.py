"""The one seam to wsproto (and h11): the WebSocket handshake and framing.

Nothing outside this module sees a wsproto or h11 type. Events come out as small tuples
whose first item is one of the constants below; the connection dispatches on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection as _WsFrames
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError as _WsRemoteError

Headers = tuple[tuple[bytes, bytes], ...]

# Event tags.
UPGRADE = 1  # (UPGRADE, path, headers, host, subprotocols)            server
ACCEPTED = 2  # (ACCEPTED, subprotocol, headers)                        client
REJECTED = 3  # (REJECTED, status, headers, has_body)                   client
REJECT_BODY = 4  # (REJECT_BODY, data, finished)                        client
HANDSHAKE_FAILED = 5  # (HANDSHAKE_FAILED, reason)
TEXT = 6  # (TEXT, text, message_finished)
BINARY = 7  # (BINARY, size, message_finished)
PING = 8  # (PING, payload)
PONG = 9  # (PONG, payload)
CLOSE = 10  # (CLOSE, code, reason)   a close frame arrived
FAILED = 11  # (FAILED, code, reason) the peer broke RFC 6455; fail with `code`

_STILL_READING = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
_CAN_CLOSE = (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)

#: The answer to a plain `GET` with no upgrade, as session-rs gives it.
PLAIN_GET_BODY = b"OK"
#: How much of an opening handshake is kept to tell a plain GET from a bad upgrade.
_MAX_KEPT_REQUEST = 16 * 1024


class WebSocket:
    """A WebSocket endpoint: handshake first, then frames."""

    __slots__ = ("_client", "_frames", "_pending_response", "_request_bytes", "_ws", "leftover")

    def __init__(self, *, client: bool) -> None:
        self._client = client
        self._ws = WSConnection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
        self._frames: _WsFrames | None = None
        self._request_bytes = b""
        self._pending_response = b""
        self.leftover = b""
        "Server: bytes that followed the upgrade request, for the session once accepted."

    # -- handshake -------------------------------------------------------------------

    def start_client(
        self, host: str, target: str, headers: Sequence[tuple[bytes, bytes]], subprotocols: Sequence[str]
    ) -> bytes:
        return self._ws.send(
            Request(host=host, target=target, extra_headers=list(headers), subprotocols=list(subprotocols))
        )

    def accept(self, subprotocol: str | None, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        data = self._ws.send(AcceptConnection(subprotocol=subprotocol, extra_headers=list(headers)))
        self._frames = self._ws.connection
        return data

    def reject(self, status_code: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> bytes:
        return self._send_reject(
            RejectConnection(status_code=status_code, headers=list(headers), has_body=True), body
        )

    def _send_reject(self, head: RejectConnection, body: bytes) -> bytes:
        data = self._ws.send(head)
        if head.has_body:
            data += self._ws.send(RejectData(data=body, body_finished=True))
        return data

    def take_handshake_response(self) -> bytes:
        """Bytes answering a failed handshake (server side), once."""
        data, self._pending_response = self._pending_response, b""
        return data

    # -- input -----------------------------------------------------------------------

    def receive(self, data: bytes | None) -> Iterator[tuple[Any, ...]]:
        """Feed bytes (`None` at the end of the stream) and yield what they completed."""
        frames = self._frames
        if frames is None:
            yield from self._receive_handshake(data)
            frames = self._frames
            if frames is None:
                return
        else:
            frames.receive_data(data)
        for event in frames.events():
            if isinstance(event, TextMessage):
                yield TEXT, event.data, event.message_finished
            elif isinstance(event, BytesMessage):
                yield BINARY, len(event.data), event.message_finished
            elif isinstance(event, Ping):
                yield PING, bytes(event.payload)
            elif isinstance(event, Pong):
                yield PONG, bytes(event.payload)
            elif isinstance(event, CloseConnection):
                # wsproto reports a frame it cannot parse as a CloseConnection too, without
                # leaving the OPEN state; a real close frame moves it to *_CLOSING/CLOSED.
                if frames.state in _STILL_READING and data is not None:
                    yield FAILED, int(event.code), event.reason or ""
                else:
                    yield CLOSE, int(event.code), event.reason or ""

    def _receive_handshake(self, data: bytes | None) -> Iterator[tuple[Any, ...]]:
        if not self._client and data is not None:
            # Give h11 the request's head and nothing after it: wsproto would drop what
            # follows (frames a client pipelined behind its upgrade), so keep it aside.
            self._request_bytes += data
            end = self._request_bytes.find(b"\r\n\r\n")
            if end < 0 and len(self._request_bytes) <= _MAX_KEPT_REQUEST:
                return
            if end >= 0:
                data, self.leftover = self._request_bytes[: end + 4], self._request_bytes[end + 4 :]
            else:
                data = self._request_bytes  # too big: let h11 refuse it
        try:
            self._ws.receive_data(data)
            # Only the handshake's events: frames that came with the 101 are read below.
            events = list(self._ws.handshake.events())
        except _WsRemoteError as exc:
            if not self._client:
                self._pending_response = self._answer_bad_request(exc.event_hint)
            yield HANDSHAKE_FAILED, str(exc)
            return
        self._frames = self._ws.connection if self._client else None
        for event in events:
            if isinstance(event, Request):
                yield UPGRADE, event.target, tuple(event.extra_headers), event.host, tuple(event.subprotocols)
            elif isinstance(event, AcceptConnection):
                yield ACCEPTED, event.subprotocol, tuple(event.extra_headers)
            elif isinstance(event, RejectConnection):
                yield REJECTED, event.status_code, tuple(event.headers), event.has_body
            elif isinstance(event, RejectData):
                yield REJECT_BODY, bytes(event.data), event.body_finished

    def _answer_bad_request(self, hint: Any) -> bytes:
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
        parser.receive_data(self._request_bytes)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return False
        if not isinstance(event, h11.Request) or event.method != b"GET":
            return False
        return not any(name == b"upgrade" for name, _ in event.headers)

    # -- output ----------------------------------------------------------------------

    def send_text(self, text: str) -> bytes:
        assert self._frames is not None
        return self._frames.send(Message(data=text))

    def ping(self, payload: bytes) -> bytes:
        assert self._frames is not None
        return self._frames.send(Ping(payload=payload))

    def pong(self, payload: bytes) -> bytes:
        assert self._frames is not None
        return self._frames.send(Pong(payload=payload))

    def close(self, code: int | None, reason: str) -> bytes:
        """A close frame; `code=None` (or 1005) sends one without a status code."""
        assert self._frames is not None
        if code is None or code == CloseReason.NO_STATUS_RCVD:
            # wsproto omits the status code only for this very enum member.
            return self._frames.send(CloseConnection(code=CloseReason.NO_STATUS_RCVD))
        return self._frames.send(CloseConnection(code=code, reason=reason or None))

    @property
    def can_send_close(self) -> bool:
        return self._frames is not None and self._frames.state in _CAN_CLOSE
