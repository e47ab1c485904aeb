"""Events: what happened on a connection, as immutable objects named in the past tense.

`Connection.next_event()` returns them in order. Every connection ends with exactly one
`ConnectionClosed`, and every request sent through `Connection.send_request` ends with
exactly one outcome: `ResponseReceived`, `ErrorResponseReceived`, `InvalidResponseReceived`,
`RequestTimedOut` or `RequestAborted` (unless the caller gave it up with
`Connection.cancel_request`).
"""

from __future__ import annotations

from typing import Any

import attrs

Headers = tuple[tuple[bytes, bytes], ...]


class Event:
    """Base class of all events."""

    __slots__ = ()


# --- the handshake ---------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class UpgradeRequested(Event):
    """Server: a client asks to open a session; call `accept()` or `reject()`."""

    path: str
    "The request target, such as `/chat?room=1`."
    headers: Headers
    "The request's headers (names lower-cased), without `Host` and `Sec-WebSocket-Protocol`."
    host: str
    "The `Host` header."
    subprotocols: tuple[str, ...]
    "The subprotocols the client offers, in its order of preference."


@attrs.frozen(kw_only=True)
class HandshakeAccepted(Event):
    """Client: the server accepted the upgrade; the session is open."""

    subprotocol: str | None
    "The subprotocol the server chose, if any."
    headers: Headers
    "The response's extra headers."


@attrs.frozen(kw_only=True)
class UpgradeRejected(Event):
    """Client: the server answered the upgrade with an HTTP response other than 101."""

    status_code: int
    headers: Headers
    body: bytes
    "The response body (at most `Config.max_rejection_body` bytes)."


# --- messages --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RequestReceived(Event):
    """The peer asks us to run a method; answer with `send_response` and its siblings."""

    request_id: int
    "The peer's id for this request: pass it to the answer."
    method: str
    data: Any
    "The data, converted to the registered method's request type (raw JSON if untyped)."


@attrs.frozen(kw_only=True)
class NotificationReceived(Event):
    """The peer sent a notification."""

    method: str
    data: Any
    "The data, converted to the registered method's request type (raw JSON if unknown)."


@attrs.frozen(kw_only=True)
class ResponseReceived(Event):
    """Our request was answered with a success."""

    request_id: int
    method: str
    result: Any
    "The result, converted to the method's response type."


@attrs.frozen(kw_only=True)
class ErrorResponseReceived(Event):
    """Our request was answered with an error response.

    When `error` is a protocol error object (`PROTOCOL.md`), `code` and `message` hold its
    fields and `error` is the raw object; otherwise they are `None` and `error` is
    converted to the method's error type.
    """

    request_id: int
    method: str
    error: Any
    code: int | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class InvalidResponseReceived(Event):
    """Our request was answered with a value that does not fit the method's types."""

    request_id: int
    method: str
    reason: str


@attrs.frozen(kw_only=True)
class RequestTimedOut(Event):
    """Our request got no answer in time; `$/cancel` went to the peer."""

    request_id: int
    method: str


@attrs.frozen(kw_only=True)
class RequestAborted(Event):
    """The connection ended (or began to close) before our request was answered."""

    request_id: int
    method: str
    code: int
    "The close code that ended the session (see `ConnectionClosed`)."
    reason: str


@attrs.frozen(kw_only=True)
class CancelRequested(Event):
    """The peer sent `$/cancel` for one of its requests that we still handle.

    The connection has already answered it with error -32800; stop the handler. Its
    answer, if it still comes, is dropped.
    """

    request_id: int


@attrs.frozen(kw_only=True)
class RequestRejected(Event):
    """The connection itself answered a request with a protocol error (unknown method,
    invalid data). For the user's information: nothing is left to do."""

    request_id: int
    method: str
    code: int
    message: str


@attrs.frozen(kw_only=True)
class UnexpectedResponseReceived(Event):
    """An answer arrived for an id that waits for none. Not fatal.

    `reason` is `"timed out"` or `"cancelled"` for a request we gave up on (the answer came
    late), `"unknown id"` otherwise.
    """

    request_id: int
    reason: str

    @property
    def late(self) -> bool:
        """True for an answer to a request we gave up on (timed out or cancelled)."""
        return self.reason != "unknown id"


@attrs.frozen(kw_only=True)
class InvalidMessageReceived(Event):
    """The peer sent a message that breaks the protocol; it was ignored. Not fatal."""

    reason: str


@attrs.frozen(kw_only=True)
class PongReceived(Event):
    """A pong answered the ping that `send_ping()` returned `ping_id` for."""

    ping_id: int


@attrs.frozen(kw_only=True)
class ConnectionClosed(Event):
    """The connection has ended; always the last event.

    `code` and `reason` come from the close frame that ended the session: the peer's when
    it closed first, ours when we did. 1005 is a close frame without a code (a normal end,
    as session-rs closes), 1006 a connection lost without any close frame.
    """

    code: int
    reason: str
