"""The one exception hierarchy of the project.

```
SessionError
├── LocalProtocolError        the caller misused the API (wrong state, bad value)
│   ├── EncodingError         a value cannot be sent as JSON or as its type
│   └── TooManyPendingRequests
├── HandshakeError            the WebSocket handshake failed (client side)
│   └── HandshakeRejected     the server answered with an HTTP error
├── SessionClosed             the session ended before the operation could finish
├── InvalidResponse           an answer arrived that does not fit the method's types
└── RemoteError               the peer answered with an error response
    └── RemoteProtocolError   ... holding a protocol error object (code, message)
        ├── MethodNotFound          -32601
        ├── InvalidRequestData      -32602
        ├── InternalError           -32603
        └── RequestCancelled        -32800
MethodError                   raised by a request handler to answer with an error value
```

Violations by the peer never surface as exceptions from `Connection.receive_data`: they
become events (see `_events.py`).
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.IntEnum):
    """Codes of the protocol error objects (`PROTOCOL.md`, "Answering")."""

    METHOD_NOT_FOUND = -32601
    INVALID_REQUEST_DATA = -32602
    INTERNAL_ERROR = -32603
    REQUEST_CANCELLED = -32800


#: The codes that mark an error value as a protocol error object: JSON-RPC's reserved range
#: (`PROTOCOL.md`), and -32800, which `PROTOCOL.md` defines for cancellation although it
#: lies outside that range (it comes from the Language Server Protocol).
PROTOCOL_ERROR_CODES = frozenset(range(-32768, -32000 + 1)) | {ErrorCode.REQUEST_CANCELLED}


class SessionError(Exception):
    """Base class of every exception this project raises."""


class LocalProtocolError(SessionError):
    """The caller asked for something the protocol or the connection's state forbids."""


class EncodingError(LocalProtocolError):
    """A value cannot be sent: it is not JSON (NaN, a lone surrogate...) or not of its type."""


class TooManyPendingRequests(LocalProtocolError):
    """`Config.max_pending_requests` requests already wait for their answers."""


class HandshakeError(SessionError):
    """The WebSocket opening handshake failed."""


class HandshakeRejected(HandshakeError):
    """The server refused the WebSocket upgrade with an HTTP response."""

    def __init__(self, status_code: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes):
        super().__init__(f"handshake rejected with HTTP {status_code}: {body[:200]!r}")
        self.status_code = status_code
        self.headers = headers
        self.body = body


class SessionClosed(SessionError):
    """The session ended: the operation cannot complete.

    `code` and `reason` are those of the close that ended the session (1006 when the
    connection was lost without a close frame).
    """

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        super().__init__(f"session closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class InvalidResponse(SessionError):
    """The peer answered a request with a value that does not fit the method's types."""

    def __init__(self, method: str, request_id: int, reason: str) -> None:
        super().__init__(f"invalid answer to {method!r} (request {request_id}): {reason}")
        self.method = method
        self.request_id = request_id
        self.reason = reason


class RemoteError(SessionError):
    """The peer answered a request with an error response.

    `error` holds the error value, decoded with the method's error type.
    """

    def __init__(self, error: Any, *, method: str = "", request_id: int = 0) -> None:
        super().__init__(error)
        self.error = error
        self.method = method
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.method or 'request'} failed: {self.error!r}"


class RemoteProtocolError(RemoteError):
    """The peer answered with a protocol error object (`code` and `message`).

    `RemoteError.from_answer` picks the subclass that matches the code.
    """

    def __init__(self, code: int, message: str, *, method: str = "", request_id: int = 0):
        super().__init__({"code": code, "message": message}, method=method, request_id=request_id)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.method or 'request'} failed: {self.message} ({self.code})"


class MethodNotFound(RemoteProtocolError):
    """The peer does not serve the method (-32601)."""


class InvalidRequestData(RemoteProtocolError):
    """The peer could not read the request's data as the method's request type (-32602)."""


class InternalError(RemoteProtocolError):
    """The peer's handler failed unexpectedly (-32603)."""


class RequestCancelled(RemoteProtocolError):
    """The peer cancelled the request (-32800)."""


_BY_CODE: dict[int, type[RemoteProtocolError]] = {
    ErrorCode.METHOD_NOT_FOUND: MethodNotFound,
    ErrorCode.INVALID_REQUEST_DATA: InvalidRequestData,
    ErrorCode.INTERNAL_ERROR: InternalError,
    ErrorCode.REQUEST_CANCELLED: RequestCancelled,
}


def remote_protocol_error(
    code: int, message: str, *, method: str = "", request_id: int = 0
) -> RemoteProtocolError:
    """Build the `RemoteProtocolError` subclass that matches `code`."""
    cls = _BY_CODE.get(code, RemoteProtocolError)
    return cls(code, message, method=method, request_id=request_id)


class MethodError(Exception):
    """Raise it in a request handler to answer with an error response.

    `error` must fit the method's error type; it becomes the `error` field on the wire::

        raise MethodError("negative")   # {"type":"errorresponse","id":..,"error":"negative"}
    """

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error
