"""session_asyncio: session-py over asyncio (and uvloop).

Typed request/response and notification messaging over WebSocket, wire-compatible with the
Rust crate session-rs. All protocol logic lives in `session_core.Connection`; this package
only moves bytes between it and asyncio transports, wakes tasks and schedules its timer.
`session_trio` offers the same names: switching is changing the import and the way the
loop is run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from session_hub import open_hub


def __getattr__(name: str) -> Any:
    # `open_hub` is `session_hub.open_hub`, loaded on first use: the hub and anyio under it
    # cost every import of this package otherwise, and most programs never open a hub.
    if name == "open_hub":
        from session_hub import open_hub  # noqa: PLC0415

        return open_hub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
