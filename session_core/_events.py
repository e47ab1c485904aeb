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
"""HTTP headers as `(name, value)` byte pairs, in order."""


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
    "The HTTP status of the response."
    headers: Headers
    "The response's headers, names lower-cased."
    body: bytes
    "The response body (at most `Config.max_rejection_body` bytes)."


# --- messages --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RequestReceived(Event):
    """The peer asks us to run a method; answer with `send_response` and its siblings."""

    request_id: int
    "The peer's id for this request: pass it to the answer."
    method: str
    "The method's name."
    data: Any
    "The data, converted to the registered method's request type (raw JSON if untyped)."


@attrs.frozen(kw_only=True)
class NotificationReceived(Event):
    """The peer sent a notification."""

    method: str
    "The method's name."
    data: Any
    "The data, converted to the registered method's request type (raw JSON if unknown)."


@attrs.frozen(kw_only=True)
class ResponseReceived(Event):
    """Our request was answered with a success."""

    request_id: int
    "The id of our request this answers."
    method: str
    "The method's name."
    result: Any
    "The result, converted to the method's response type."


@attrs.frozen(kw_only=True)
class ErrorResponseReceived(Event):
    """Our request was answered with an error response.

    When `error` is a protocol error object (`docs/protocol.md`, "Answering"), `code` and `message` hold its
    fields and `error` is the raw object; otherwise they are `None` and `error` is
    converted to the method's error type.
    """

    request_id: int
    "The id of our request this answers."
    method: str
    "The method's name."
    error: Any
    "The error value (typed by the method, or the raw protocol error object)."
    code: int | None = None
    "The protocol error code, or `None` for a method's own error value."
    message: str | None = None
    "The protocol error message, or `None`."


@attrs.frozen(kw_only=True)
class InvalidResponseReceived(Event):
    """Our request was answered with a value that does not fit the method's types."""

    request_id: int
    "The id of our request this answers."
    method: str
    "The method's name."
    reason: str
    "Why the value does not fit the method's type."


@attrs.frozen(kw_only=True)
class RequestTimedOut(Event):
    """Our request got no answer in time; `$/cancel` went to the peer."""

    request_id: int
    "The id of our request that timed out."
    method: str
    "The method's name."


@attrs.frozen(kw_only=True)
class RequestAborted(Event):
    """The connection ended (or began to close) before our request was answered."""

    request_id: int
    "The id of our request that will get no answer."
    method: str
    "The method's name."
    code: int
    "The close code that ended the session (see `ConnectionClosed`)."
    reason: str
    "The close reason."


@attrs.frozen(kw_only=True)
class CancelRequested(Event):
    """The peer sent `$/cancel` for one of its requests that we still handle.

    The connection has already answered it with error -32800; stop the handler. Its
    answer, if it still comes, is dropped.
    """

    request_id: int
    "The id of the peer's request it cancelled."


@attrs.frozen(kw_only=True)
class RequestRejected(Event):
    """The connection itself answered a request with a protocol error (unknown method,
    invalid data). For the user's information: nothing is left to do."""

    request_id: int
    "The peer's id of the request the connection answered."
    method: str
    "The method's name."
    code: int
    "The protocol error code sent (-32601 or -32602)."
    message: str
    "The protocol error message sent."


@attrs.frozen(kw_only=True)
class UnexpectedResponseReceived(Event):
    """An answer arrived for an id that waits for none. Not fatal.

    `reason` is `"timed out"` or `"cancelled"` for a request we gave up on (the answer came
    late), `"unknown id"` otherwise.
    """

    request_id: int
    "The id the answer carried."
    reason: str
    '`"unknown id"`, `"timed out"` or `"cancelled"`.'

    @property
    def late(self) -> bool:
        """True for an answer to a request we gave up on (timed out or cancelled)."""
        return self.reason != "unknown id"


@attrs.frozen(kw_only=True)
class InvalidMessageReceived(Event):
    """The peer sent a message that breaks the protocol; it was ignored. Not fatal."""

    reason: str
    "What is wrong with the message (never its content)."


@attrs.frozen(kw_only=True)
class PongReceived(Event):
    """A pong answered the ping that `send_ping()` returned `ping_id` for."""

    ping_id: int
    "The id `send_ping()` returned."


@attrs.frozen(kw_only=True)
class ConnectionClosed(Event):
    """The connection has ended; always the last event.

    `code` and `reason` come from the close frame that ended the session: the peer's when
    it closed first, ours when we did. 1005 is a close frame without a code (a normal end,
    as session-rs closes), 1006 a connection lost without any close frame.
    """

    code: int
    "The close code (RFC 6455 section 7.4)."
    reason: str
    "The close reason, possibly empty."
