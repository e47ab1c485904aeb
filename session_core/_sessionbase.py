"""The half of a session that is the same for every adapter.

Registering handlers is bookkeeping (a name, a handler, the connection told to type the
method), and the session's facts (how it closed, its handshake, its peer) are the
connection's: the adapters' `Session` classes inherit both from `SessionBase`, and keep
only what takes tasks and I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, overload

from ._connection import Connection
from ._events import Headers
from ._methods import Method
from ._state import State

Req = TypeVar("Req")
Resp = TypeVar("Resp")

RequestHandler: TypeAlias = Callable[[Req], Awaitable[Resp]]
"""`async def handler(data: Req) -> Resp`: serves one method's requests."""
NotificationHandler: TypeAlias = Callable[[Req], Awaitable[object]]
"""`async def handler(data: Req) -> None`: receives one method's notifications."""


class SessionBase:
    """What the adapters' `Session` classes share: the facts of the connection, and
    `on_request`/`on_notification`. A subclass sets the attributes annotated here."""

    __slots__ = ()

    _conn: Connection
    _remote_address: Any
    _request_handlers: dict[str, RequestHandler[Any, Any]]
    _notification_handlers: dict[str, NotificationHandler[Any]]

    @property
    def closed(self) -> bool:
        """Whether the session has ended (the close handshake is over or the connection lost)."""
        return self._conn.state is State.CLOSED

    @property
    def close_code(self) -> int | None:
        """The close code that ended the session (`None` until it has ended).

        The peer's code when it closed first, ours when we did; 1005 for a close frame
        without a code (how session-rs closes), 1006 for a connection lost without one.
        """
        return self._conn.close_code if self.closed else None

    @property
    def close_reason(self) -> str | None:
        """The reason that came with `close_code` (`None` until the session has ended)."""
        return self._conn.close_reason if self.closed else None

    @property
    def path(self) -> str:
        """The request target of the opening handshake, such as `/chat?room=1`."""
        return self._conn.path

    @property
    def request_headers(self) -> Headers:
        """Server: the upgrade request's headers. Client: the extra headers it sent."""
        return self._conn.request_headers

    @property
    def response_headers(self) -> Headers:
        """Client: the 101 response's extra headers. Server: the extra headers it sent."""
        return self._conn.response_headers

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol agreed in the handshake, if any."""
        return self._conn.subprotocol

    @property
    def remote_address(self) -> Any:
        """The peer's socket address (`(host, port)` over TCP), or `None` if unknown."""
        return self._remote_address

    @overload
    def on_request(
        self, method: Method[Req, Resp, Any], handler: None = None
    ) -> Callable[[RequestHandler[Req, Resp]], RequestHandler[Req, Resp]]: ...
    @overload
    def on_request(
        self, method: Method[Req, Resp, Any], handler: RequestHandler[Req, Resp]
    ) -> RequestHandler[Req, Resp]: ...
    def on_request(
        self, method: Method[Any, Any, Any], handler: RequestHandler[Any, Any] | None = None
    ) -> Any:
        """Serve `method`: `handler(data)` answers each of the peer's requests for it.

        Use it as a decorator (`@session.on_request(add)`) or call it with the handler.
        The handler is `async def handler(data) -> response`; it runs in a task of its own,
        concurrently with others (at most `Config.max_incoming_requests` at once). It
        fails with the method's error type by raising `MethodError(error)`; any other
        exception is logged and answered with -32603 (internal error). It is cancelled
        when the peer cancels the request or the session ends. A handler registered again
        for the same method replaces the first.

        Requests for methods with no handler are answered with -32601, and requests whose
        data does not fit with -32602, before any handler.
        """

        def register(handler: RequestHandler[Any, Any]) -> RequestHandler[Any, Any]:
            self._conn.add_method(method)
            self._request_handlers[method.name] = handler
            return handler

        return register if handler is None else register(handler)

    @overload
    def on_notification(
        self, method: Method[Req, Any, Any], handler: None = None
    ) -> Callable[[NotificationHandler[Req]], NotificationHandler[Req]]: ...
    @overload
    def on_notification(
        self, method: Method[Req, Any, Any], handler: NotificationHandler[Req]
    ) -> NotificationHandler[Req]: ...
    def on_notification(
        self, method: Method[Any, Any, Any], handler: NotificationHandler[Any] | None = None
    ) -> Any:
        """Handle the peer's notifications for `method` with `handler(data)`.

        Use it as a decorator or call it with the handler. The handler is
        `async def handler(data) -> None`. Notifications reach their handlers one at a
        time, in the order they arrived: a handler that must not hold up the next one
        starts a task of its own. An exception from a handler is logged and the session
        goes on. Notifications nobody handles are dropped (logged at debug level).
        """

        def register(handler: NotificationHandler[Any]) -> NotificationHandler[Any]:
            self._conn.add_method(method, requests=False)
            self._notification_handlers[method.name] = handler
            return handler

        return register if handler is None else register(handler)
