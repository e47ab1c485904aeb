"""The driver layer: everything a session over real I/O does that is not I/O.

`Connection` is the protocol; a driver feeds it bytes and the time and acts on its events.
What every driver decides the same way lives here, once: how each event is acted on, how
a request waits for its answer and gives up, how a ping is timed, how handlers are
dispatched (requests concurrently, notifications one at a time in arrival order, a bounded
queue), how the opening handshake ends, what an upgrade hook may return, and what happens
when `on_session` raises. `session_trio` and `session_asyncio` are `SessionDriver`
subclasses that add only sockets, tasks and waiting; a third driver (a custom loop, a
command line) is built the same way.

Nothing here imports an event loop, a socket or a clock. `SessionDriver` has coroutines,
but they only ever await what its subclass's primitives return.

A subclass implements these primitives (see `SessionDriver` for their contracts):
`_now`, `_new_waiter`, `_park`, `_wake`, `_spawn`, `_spawn_notifier`, `_cancel`,
`_flush`, `_sent`, `_arm_timer`, `_write_blocked`, `_drained`, `_checkpoint`, `start`,
`wait_closed`, and may override `_session_ended`, `_clock` and `_begin`.

The modules behind these names, one concern each: `_pump` (the primitives and the pump),
`_calls` (our requests and pings), `_dispatch` (handlers and their order), `_handshake`
(the opening handshake, the upgrade hook, `serve_session`), `_hub` (a session's id and
groups), `_session` (`SessionDriver`: the parts together, the facts, closing), `_outcomes`
and `_url` (helpers for any driver), `_reconnect` (the reconnecting loop).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

# Reconnecting clients: the policy stays in the engine (`session_core.Backoff`); what a
# reconnecting driver uses is exported here with the rest of the driver layer.
from .._backoff import RETRIED_CLOSE_CODES, RETRIED_STATUS_CODES, Reconnector, should_retry
from .._config import Accept, Reject
from .._events import NotificationReceived, RequestReceived, UpgradeRequested

# For drivers that carry a method's values elsewhere (the hub): the session's own strict JSON
# encoder, and its account of a value that does not fit its type.
from .._json import dumps as encode_json
from .._methods import describe_error
from ._dispatch import MAX_QUEUED_NOTIFICATIONS
from ._handshake import serve_session, upgrade_decision

# Not in `__all__` (an adapter's `serve(hub=)` annotation, not a user's name), but importable.
from ._hub import SessionHub as SessionHub
from ._outcomes import OUTCOMES, log_event, result_of
from ._pump import TEARDOWN_GRACE
from ._reconnect import Reconnecting, keep_connected
from ._session import SessionDriver
from ._url import WebSocketURL, parse_url

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# The names a user annotates handlers and hooks with, defined here in front of the modules
# (which use them in annotations only), with the rest of the package's public names.
RequestHandler: TypeAlias = Callable[[Req], Awaitable[Resp]]
"""`async def handler(data: Req) -> Resp`: serves one method's requests."""
NotificationHandler: TypeAlias = Callable[[Req], Awaitable[object]]
"""`async def handler(data: Req) -> None`: receives one method's notifications."""
AnyRequestHandler: TypeAlias = Callable[[RequestReceived], Awaitable[Any]]
"""`async def handler(request: RequestReceived) -> Any`: serves requests no handler of their
own serves; `request.method`, `request.data` (raw JSON) and `request.request_id`; the result
goes out as raw JSON."""
AnyNotificationHandler: TypeAlias = Callable[[NotificationReceived], Awaitable[object]]
"""`async def handler(notification: NotificationReceived) -> None`: receives notifications no
handler of their own receives; `notification.method` and `notification.data` (raw JSON)."""
Decision: TypeAlias = Accept | Reject | None
"""What an upgrade hook decides: `Accept(...)`, `Reject(...)`, or `None` (accept)."""
UpgradeHook: TypeAlias = Callable[[UpgradeRequested, Any], Decision | Awaitable[Decision]]
"""`on_upgrade(request, remote_address)`, sync or async: `Accept`, `Reject` or `None` (accept)."""

__all__ = [
    "MAX_QUEUED_NOTIFICATIONS",
    "OUTCOMES",
    "RETRIED_CLOSE_CODES",
    "RETRIED_STATUS_CODES",
    "TEARDOWN_GRACE",
    "AnyNotificationHandler",
    "AnyRequestHandler",
    "Decision",
    "NotificationHandler",
    "Reconnecting",
    "Reconnector",
    "RequestHandler",
    "SessionDriver",
    "UpgradeHook",
    "WebSocketURL",
    "describe_error",
    "encode_json",
    "keep_connected",
    "log_event",
    "parse_url",
    "result_of",
    "serve_session",
    "should_retry",
    "upgrade_decision",
]
