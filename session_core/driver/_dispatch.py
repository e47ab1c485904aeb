"""The peer's messages to their handlers: registration, dispatch and the promise on order.

A request's handler runs in a task of its own, concurrently with the others (the
connection bounds how many are in flight). Notifications reach their handlers one at a
time, in the order they arrived, from a bounded queue: at `MAX_QUEUED_NOTIFICATIONS` the
session stops reading. The promise on order: a message's handler starts only after the
handlers of every notification received before it have finished, so that a request that
arrives behind notifications waits in their line, then runs concurrently.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

from .._errors import ErrorCode
from .._events import CancelRequested, NotificationReceived, RequestReceived
from .._methods import Method
from .._state import State
from ._pump import Pump

if TYPE_CHECKING:
    # The public aliases are defined (and documented) in the package's `__init__`.
    from . import AnyNotificationHandler, AnyRequestHandler, NotificationHandler, RequestHandler

__all__ = ["MAX_QUEUED_NOTIFICATIONS", "Dispatch"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
W = TypeVar("W")
H = TypeVar("H")

#: Notifications received and not yet handed to their handler, at most; at the bound the
#: driver stops reading (what it read last may take the queue one read past it).
MAX_QUEUED_NOTIFICATIONS = 128


class Call:
    """One request of the peer's, from its arrival to its answer: what cancels its handler."""

    __slots__ = ("handle",)

    def __init__(self) -> None:
        self.handle: Any = None


# A queued delivery: the handler, the method (for the log) and the handler's arguments;
# or, for a request that waits for the notifications before it, `None` and the request.
Delivery: TypeAlias = tuple[Callable[..., Awaitable[Any]] | None, str, tuple[Any, ...]]


class Dispatch(Pump[W, H]):
    """The handlers of the peer's requests and notifications, and their dispatch."""

    _request_handlers: dict[str, RequestHandler[Any, Any]]
    _notification_handlers: dict[str, NotificationHandler[Any]]
    _any_request: AnyRequestHandler | None
    _any_notification: AnyNotificationHandler | None
    # The peer's requests whose handler may still answer.
    _in_flight: dict[int, Call]
    # Notifications (and requests behind them) waiting for their turn (an empty tuple
    # until the first: an empty deque is some 600 bytes, per session), and whether a task
    # delivers them.
    _notifications: deque[Delivery] | tuple[()]
    _notifying: bool

    # -- registration ------------------------------------------------------------------

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

        Requests for methods with no handler are answered with -32601 (unless
        `on_any_request` serves them), and requests whose data does not fit with -32602,
        before any handler.
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
        goes on. Notifications nobody handles are dropped (logged at debug level), unless
        `on_any_notification` takes them.
        """

        def register(handler: NotificationHandler[Any]) -> NotificationHandler[Any]:
            self._conn.add_method(method, requests=False)
            self._notification_handlers[method.name] = handler
            return handler

        return register if handler is None else register(handler)

    @overload
    def on_any_request(self, handler: None = None) -> Callable[[AnyRequestHandler], AnyRequestHandler]: ...
    @overload
    def on_any_request(self, handler: AnyRequestHandler) -> AnyRequestHandler: ...
    def on_any_request(self, handler: AnyRequestHandler | None = None) -> Any:
        """Serve every request that no `on_request` handler serves: `handler(request)`.

        Use it as a decorator (`@session.on_any_request()`) or call it with the handler.
        The handler is `async def handler(request: RequestReceived) -> result`: the event
        gives `method`, `data` (raw JSON) and `request_id`, and the result goes out as raw
        JSON. It runs as a request handler does (concurrently, `MethodError` for an error
        response, cancelled by `$/cancel`); raising a `ProtocolErrorResponse` (such as
        `MethodNotFound(-32601, "...")`) answers with that protocol error object, so that a
        proxy can pass the answers of another peer on as they were. Without it, such
        requests are answered -32601. Registering again replaces the handler.
        """

        def register(handler: AnyRequestHandler) -> AnyRequestHandler:
            self._conn.add_catch_all()
            self._any_request = handler
            return handler

        return register if handler is None else register(handler)

    @overload
    def on_any_notification(
        self, handler: None = None
    ) -> Callable[[AnyNotificationHandler], AnyNotificationHandler]: ...
    @overload
    def on_any_notification(self, handler: AnyNotificationHandler) -> AnyNotificationHandler: ...
    def on_any_notification(self, handler: AnyNotificationHandler | None = None) -> Any:
        """Receive every notification that no `on_notification` handler takes: `handler(notification)`.

        Use it as a decorator or call it with the handler. The handler is
        `async def handler(notification: NotificationReceived) -> None` (`method`, and
        `data` as raw JSON); it runs in the same one-at-a-time, arrival-order line as the
        other notification handlers. Registering again replaces the handler.
        """

        def register(handler: AnyNotificationHandler) -> AnyNotificationHandler:
            self._any_notification = handler
            return handler

        return register if handler is None else register(handler)

    # -- dispatch ----------------------------------------------------------------------

    def _reading_blocked(self) -> bool:
        """Whether to stop reading: the peer's requests in flight or the notifications
        waiting are at their bound, or the connection holds input (handshake, start)."""
        return self._conn.reading_paused or len(self._notifications) >= MAX_QUEUED_NOTIFICATIONS

    def _on_request(self, event: RequestReceived) -> None:
        handler = self._request_handlers.get(event.method)
        if handler is not None:
            delivery: Delivery = (handler, event.method, (event.data,))
        elif self._any_request is not None:
            delivery = (self._any_request, event.method, (event,))
        else:  # not in a typed connection; answered as the engine would
            self._conn.send_protocol_error(event.request_id, ErrorCode.METHOD_NOT_FOUND, "method not found")
            return
        call = self._in_flight[event.request_id] = Call()
        if self._notifying:
            # Notifications received before this request are still being handled: it
            # starts after them (in the delivery line), then runs concurrently.
            self._queue().append((None, event.method, (event.request_id, call, delivery)))
        else:
            call.handle = self._spawn(self._answer(event.request_id, call, delivery))

    async def _answer(self, request_id: int, call: Call, delivery: Delivery) -> None:
        handler, _, args = delivery
        assert handler is not None
        conn = self._conn
        error: Exception | None = None
        result: Any = None
        try:
            try:
                result = await handler(*args)
            except Exception as exc:
                error = exc
            # Write flow control: while writes wait for the transport the answer waits
            # too, and keeps its request in flight, so that a peer that reads nothing
            # meets the bound on requests (reading stops) instead of a growing buffer.
            if self._write_blocked():
                await self._drained()
        except BaseException:
            # Cancelled. The peer's `$/cancel` (answered by the connection) and the end of
            # the session take the request out of `_in_flight` first.
            if self._in_flight.get(request_id) is call:
                del self._in_flight[request_id]
                if self._answer_cancelled and conn.state is State.OPEN:
                    conn.send_protocol_error(request_id, ErrorCode.REQUEST_CANCELLED, "request cancelled")
                    self._sent()
            raise
        # After a `$/cancel` the peer may reuse the id while this handler still ran.
        if self._in_flight.get(request_id) is call:
            del self._in_flight[request_id]
            conn.send_outcome(request_id, result=result, exception=error)
            self._sent()

    def _on_notification(self, event: NotificationReceived) -> None:
        handler = self._notification_handlers.get(event.method)
        if handler is not None:
            self._queue().append((handler, event.method, (event.data,)))
        elif self._any_notification is not None:
            self._queue().append((self._any_notification, event.method, (event,)))
        else:
            self._logger.debug("notification %r has no handler: dropped", event.method)
            return
        if not self._notifying:
            self._notifying = True
            self._spawn_notifier(self._deliver_notifications())

    def _queue(self) -> deque[Delivery]:
        queue = self._notifications
        if not isinstance(queue, deque):
            queue = self._notifications = deque()
        return queue

    def _drop_notifications(self) -> None:
        """Forget the notifications not yet delivered (a driver leaving at once)."""
        if isinstance(self._notifications, deque):
            self._notifications.clear()  # in place: the delivering task holds it

    async def _deliver_notifications(self) -> None:
        # One task at a time delivers the notifications, in order, and starts the requests
        # that arrived behind them; it ends when none wait.
        queue = self._queue()
        try:
            while queue:
                handler, method, args = queue.popleft()
                if len(queue) == MAX_QUEUED_NOTIFICATIONS - 1:
                    self._sent()  # under the bound again: reading resumes
                if handler is None:
                    request_id, call, delivery = args
                    if request_id in self._in_flight and self._in_flight[request_id] is call:
                        # Not cancelled while it waited.
                        call.handle = self._spawn(self._answer(request_id, call, delivery))
                    continue
                try:
                    await handler(*args)
                except Exception:
                    self._logger.exception("handler of notification %r failed", method)
        finally:
            self._notifying = False

    def _on_cancel_requested(self, event: CancelRequested) -> None:
        # The connection already answered -32800: stop the handler.
        call = self._in_flight.pop(event.request_id, None)
        if call is not None and call.handle is not None:
            self._cancel(call.handle)
