"""session_asyncio: session-py over asyncio (and uvloop).

Typed request/response and notification messaging over WebSocket, wire-compatible with the
Rust crate session-rs. All protocol logic lives in `session_core.Connection`; this package
only moves bytes between it and asyncio transports, wakes tasks and schedules its timer.
`session_trio` offers the same names: switching is changing the import and the way the
loop is run.
"""

from __future__ import annotations

from session_hub import open_hub

from ._client import connect, keep_connected, reconnecting, unix_connect
from ._server import OnSession, Server, serve, unix_serve
from ._session import NotificationHandler, RequestHandler, Session, UpgradeHook

__all__ = [
    "NotificationHandler",
    "OnSession",
    "RequestHandler",
    "Server",
    "Session",
    "UpgradeHook",
    "connect",
    "keep_connected",
    "open_hub",
    "reconnecting",
    "serve",
    "unix_connect",
    "unix_serve",
]
