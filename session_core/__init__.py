"""session_core: the sans-I/O engine of session-py.

Typed request/response and notification messaging over WebSocket, wire-compatible with the
Rust crate session-rs. `Connection` takes bytes, calls and the time, and gives events, bytes
to send and its next deadline; it does no I/O of its own. The adapters `session_trio` and
`session_asyncio` drive it over real sockets; anyone can drive it from their own loop.
"""

from __future__ import annotations

from ._backoff import Backoff
from ._client import ClientConnection
from ._config import Accept, CloseCode, Config, Reject, Role
from ._connection import CANCEL_METHOD, Connection
from ._errors import (
    EncodingError,
    ErrorCode,
    HandshakeError,
    HandshakeRejected,
    InternalError,
    InvalidRequestData,
    InvalidResponse,
    LocalProtocolError,
    MethodError,
    MethodNotFound,
    ProtocolError,
    ProtocolErrorResponse,
    RemoteError,
    RemoteProtocolError,
    RequestCancelled,
    SessionClosed,
    SessionError,
    TooManyPendingRequests,
)
from ._events import (
    CancelRequested,
    ConnectionClosed,
    ErrorResponseReceived,
    Event,
    HandshakeAccepted,
    Headers,
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
    UpgradeRejected,
    UpgradeRequested,
)
from ._methods import Method, make_converter
from ._server import ServerConnection
from ._state import State

__all__ = [
    "Accept",
    "Backoff",
    "Reject",
    "CANCEL_METHOD",
    "CancelRequested",
    "ClientConnection",
    "CloseCode",
    "Config",
    "Connection",
    "ConnectionClosed",
    "EncodingError",
    "ErrorCode",
    "ErrorResponseReceived",
    "Event",
    "HandshakeAccepted",
    "Headers",
    "HandshakeError",
    "HandshakeRejected",
    "InternalError",
    "InvalidMessageReceived",
    "InvalidRequestData",
    "InvalidResponse",
    "InvalidResponseReceived",
    "LocalProtocolError",
    "Method",
    "MethodError",
    "MethodNotFound",
    "NotificationReceived",
    "PongReceived",
    "RemoteError",
    "ProtocolError",
    "ProtocolErrorResponse",
    "RemoteProtocolError",
    "RequestAborted",
    "RequestCancelled",
    "RequestReceived",
    "RequestRejected",
    "RequestTimedOut",
    "ResponseReceived",
    "Role",
    "ServerConnection",
    "SessionClosed",
    "SessionError",
    "State",
    "TooManyPendingRequests",
    "UnexpectedResponseReceived",
    "UpgradeRejected",
    "UpgradeRequested",
    "make_converter",
]
