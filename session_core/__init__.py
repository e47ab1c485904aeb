"""session_core: the sans-I/O engine of session-py.

Typed request/response and notification messaging over WebSocket, wire-compatible with the
Rust crate session-rs. `Connection` takes bytes, calls and the time, and gives events, bytes
to send and its next deadline; it does no I/O of its own. The adapters `session_trio` and
`session_asyncio` drive it over real sockets; anyone can drive it from their own loop.

Two builds of one source tree. A wheel for a common platform holds the hot modules of this
package compiled with mypyc (C extensions built from these very `.py` files, which it ships
too); the source distribution, an editable install and every other platform run the
pure-Python modules. Both behave the same: the same events, the same exceptions, the same
documentation (read from the source). `COMPILED` tells which one is running: true only when
the compiled modules are the ones imported. Setting the environment variable
`SESSION_PY_NO_EXTENSIONS` (to anything but `0`) before the first import forces the pure
modules even where compiled ones are installed (as aiohttp's `AIOHTTP_NO_EXTENSIONS`
does): `session_core`'s submodules are then loaded from their `.py` files. A checkout gets
the compiled modules next to the sources with `bash run.sh compile` and loses them again
with `bash run.sh pure`. What differs: compiled classes and functions keep no docstrings at
run time (the reference is built from the source), cannot be subclassed or patched from
Python, and hide their frames from tracebacks and profilers.
"""

from __future__ import annotations

import os as _os
import sys as _sys
from importlib.machinery import EXTENSION_SUFFIXES as _EXTENSION_SUFFIXES

if _os.environ.get("SESSION_PY_NO_EXTENSIONS", "") not in ("", "0"):
    from ._pure import install as _install_pure

    _install_pure()

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

COMPILED: bool = any(
    (getattr(module, "__file__", None) or "").endswith(tuple(_EXTENSION_SUFFIXES))
    for name, module in list(_sys.modules.items())
    if name.startswith("session_core.")
)
"""Whether the compiled modules are the ones running (see the module's documentation)."""

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
