"""The one exception hierarchy of the project.

```
SessionError
├── ProtocolError                 somebody broke the protocol (h11's and wsproto's meaning)
│   ├── LocalProtocolError        we did: the caller misused the API (wrong state, bad value)
│   │   └── EncodingError         a value cannot be sent as JSON or as its type
│   └── RemoteProtocolError       the peer did
│       └── InvalidResponse       an answer that does not fit the method's types
├── TooManyPendingRequests        back-pressure: `Config.max_pending_requests` is reached
├── HandshakeError                the WebSocket handshake failed (client side)
│   └── HandshakeRejected         the server answered with an HTTP error
├── SessionClosed                 the session ended before the operation could finish
└── RemoteError                   the peer answered with an error response
    └── ProtocolErrorResponse     ... holding a protocol error object (code, message)
        ├── MethodNotFound              -32601
        ├── InvalidRequestData          -32602
        ├── InternalError               -32603
        └── RequestCancelled            -32800
MethodError                       raised by a request handler to answer with an error value
```

Violations by the peer never surface as exceptions from `Connection.receive_data`: they
become events (see `_events.py`).
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.IntEnum):
    """Codes of the protocol error objects (`docs/protocol.md`, "Answering")."""

    METHOD_NOT_FOUND = -32601
    INVALID_REQUEST_DATA = -32602
    INTERNAL_ERROR = -32603
    REQUEST_CANCELLED = -32800


#: The codes that mark an error value as a protocol error object: JSON-RPC's reserved range
#: (`docs/protocol.md`, "Answering"), and -32800, which the protocol reserves for
#: cancellation although it lies outside that range (it comes from the Language Server
#: Protocol).
PROTOCOL_ERROR_CODES = frozenset(range(-32768, -32000 + 1)) | {ErrorCode.REQUEST_CANCELLED}


class SessionError(Exception):
    """Base class of every exception this project raises."""


class ProtocolError(SessionError):
    """Somebody broke the protocol: we (`LocalProtocolError`) or the peer
    (`RemoteProtocolError`), as in h11 and wsproto."""


class LocalProtocolError(ProtocolError):
    """The caller asked for something the protocol or the connection's state forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    After the handshake, the connection never raises it from `receive_data`: what the peer
    breaks becomes an event (`InvalidMessageReceived`, `ConnectionClosed`). It reaches a
    caller whose request got an answer it cannot read (`InvalidResponse`).
    """


class EncodingError(LocalProtocolError):
    """A value cannot be sent: it is not JSON (NaN, a lone surrogate...) or not of its type."""


class TooManyPendingRequests(SessionError):
    """`Config.max_pending_requests` requests already wait for their answers.

    Back-pressure, not a misuse: wait for answers, then send again.
    """


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


class InvalidResponse(RemoteProtocolError):
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


class ProtocolErrorResponse(RemoteError):
    """The peer answered with a protocol error object (`code` and `message`).

    `ProtocolErrorResponse.from_code` builds the subclass that matches the code.
    """

    def __init__(self, code: int, message: str, *, method: str = "", request_id: int = 0):
        super().__init__({"code": code, "message": message}, method=method, request_id=request_id)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.method or 'request'} failed: {self.message} ({self.code})"

    @classmethod
    def from_code(
        cls, code: int, message: str, *, method: str = "", request_id: int = 0
    ) -> ProtocolErrorResponse:
        """Build the subclass that matches `code` (`MethodNotFound` for -32601, ...)."""
        return _BY_CODE.get(code, ProtocolErrorResponse)(code, message, method=method, request_id=request_id)


class MethodNotFound(ProtocolErrorResponse):
    """The peer does not serve the method (-32601)."""


class InvalidRequestData(ProtocolErrorResponse):
    """The peer could not read the request's data as the method's request type (-32602)."""


class InternalError(ProtocolErrorResponse):
    """The peer's handler failed unexpectedly (-32603)."""


class RequestCancelled(ProtocolErrorResponse):
    """The peer cancelled the request (-32800)."""


_BY_CODE: dict[int, type[ProtocolErrorResponse]] = {
    ErrorCode.METHOD_NOT_FOUND: MethodNotFound,
    ErrorCode.INVALID_REQUEST_DATA: InvalidRequestData,
    ErrorCode.INTERNAL_ERROR: InternalError,
    ErrorCode.REQUEST_CANCELLED: RequestCancelled,
}


class MethodError(Exception):
    """Raise it in a request handler to answer with an error response.

    `error` must fit the method's error type; it becomes the `error` field on the wire::

        raise MethodError("negative")   # {"type":"errorresponse","id":..,"error":"negative"}
    """

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        self.error = error
