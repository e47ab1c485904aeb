"""session_trio: session-py over trio.

Typed request/response and notification messaging over WebSocket, wire-compatible with the
Rust crate session-rs. All protocol logic lives in `session_core.Connection`; this package
only moves bytes between it and trio streams, runs tasks and schedules its timer.
`session_asyncio` offers the same names: switching is changing the import and the way the
loop is run (trio's `serve` is made for `nursery.start`).

- `connect(url, ...)` / `unix_connect(path, ...)`: async context managers that open a
  client `Session`.
- `reconnecting(url, ...)`: `async with` it, then `async for session in ...`: a new
  `Session` after each one ends, with a backoff; `keep_connected(on_session, url, ...)`
  is its callback form.
- `serve(on_session, host, port, ...)` / `unix_serve(on_session, path, ...)` /
  `serve_listeners(on_session, listeners, ...)`: serve sessions, for `nursery.start(...)`.
- `Session`: `request`, `notify`, `on_request`, `on_notification`, `ping`, `close`,
  `id`, `join`, `leave`.
- `open_hub(url=None)`: the hub (`serve(..., hub=hub)`): groups, broadcast, requests to any
  session on any node; in-process, or over Redis (`redis://...`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from session_core.driver import NotificationHandler, RequestHandler, UpgradeHook

from ._client import connect, keep_connected, reconnecting, unix_connect
from ._server import OnSession, serve, serve_listeners, unix_serve
from ._session import Session

__all__ = [
    "NotificationHandler",
    "OnSession",
    "RequestHandler",
    "Session",
    "UpgradeHook",
    "connect",
    "keep_connected",
    "open_hub",
    "reconnecting",
    "serve",
    "serve_listeners",
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
