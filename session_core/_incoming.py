"""The peer's requests and notifications: which methods we serve, the requests waiting for
our answers, and those answers (`docs/protocol.md`, "Messages" and "Extensions").

`IncomingRequests` reports what the peer sends (into the connection's events) and writes
our answers (through the connection's `WebSocket`, into its output), the protocol's error
codes included: an unknown method is refused with -32601, data that does not fit with
-32602, a failing handler answers -32603 and a `$/cancel` -32800. The connection checks its
state first and calls in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from . import _messages
from ._config import Config
from ._errors import EncodingError, ErrorCode, LocalProtocolError, MethodError, ProtocolErrorResponse
from ._events import (
    CancelRequested,
    Event,
    InvalidMessageReceived,
    NotificationReceived,
    RequestReceived,
    RequestRejected,
)
from ._messages import CANCEL_METHOD, MAX_ID
from ._methods import Method, describe_error, not_sendable
from ._outgoing import RecentIds
from ._ws import WebSocket

logger = logging.getLogger("session_core")

AnyMethod = Method[Any, Any, Any]


class IncomingRequests:
    """The methods served, and the peer's requests in flight with what they were read as."""

    __slots__ = (
        "_cancelled",
        "_events",
        "_expose",
        "_out",
        "_ws",
        "catch_all",
        "ended",
        "in_flight",
        "methods",
        "notifications",
    )

    def __init__(
        self,
        methods: Iterable[AnyMethod] | None,
        config: Config,
        ws: WebSocket,
        out: list[bytes],
        events: list[Event],
    ) -> None:
        self._ws, self._out, self._events = ws, out, events
        self._expose = config.expose_internal_errors
        self.methods = None if methods is None else {m.name: m for m in methods}
        "Methods whose requests arrive typed; `None`: untyped, every request arrives raw."
        self.notifications: dict[str, AnyMethod] = dict(self.methods or {})
        "Methods whose notifications arrive typed; others arrive raw."
        self.catch_all = False
        "Requests for methods not in `methods` arrive raw instead of being refused."
        self.in_flight: dict[int, AnyMethod | None] = {}
        "The peer's requests waiting for our answer, with their method (`None`: raw)."
        self.ended = False
        "The session is closing or closed: answers are dropped."
        self._cancelled = RecentIds(config.remembered_ids)

    def __len__(self) -> int:
        return len(self.in_flight)

    def add_method(self, method: AnyMethod, *, requests: bool) -> None:
        """Serve `method`'s notifications, and its requests too with `requests`."""
        if method.name.startswith("$/"):
            raise LocalProtocolError(f"method names starting with '$/' are reserved: {method.name!r}")
        if self.methods is None:
            self.methods = {}
        if requests:
            self.methods[method.name] = method
        self.notifications[method.name] = method

    # -- what the peer sends ---------------------------------------------------------

    def receive_request(self, request_id: int, name: str, data: Any) -> None:
        """The peer's request: in flight once `RequestReceived` is reported, or refused."""
        in_flight = self.in_flight
        if request_id in in_flight:
            reason = f"request id {request_id} is already in flight"
            self._events.append(InvalidMessageReceived(reason=reason))
            return
        if self._cancelled:
            self._cancelled.pop(request_id)  # the peer reuses the id of a request it cancelled
        methods = self.methods
        method = None if methods is None else methods.get(name)
        if method is not None:
            try:
                data = method.structure_request(data)
            except Exception as exc:
                message = f"invalid request data for {name}: {describe_error(exc, method.request)}"
                self._refuse(request_id, name, ErrorCode.INVALID_REQUEST_DATA, message)
                return
        elif methods is not None and not self.catch_all:
            self._refuse(request_id, name, ErrorCode.METHOD_NOT_FOUND, f"method not found: {name}")
            return
        in_flight[request_id] = method
        self._events.append(RequestReceived(request_id=request_id, method=name, data=data))

    def _refuse(self, request_id: int, name: str, code: ErrorCode, message: str) -> None:
        self._out.append(self._ws.send_text(_messages.protocol_error(request_id, code, message)))
        self._events.append(
            RequestRejected(request_id=request_id, method=name, code=int(code), message=message)
        )

    def receive_notification(self, name: str, data: Any) -> None:
        """The peer's notification (`$/cancel` included)."""
        if name == CANCEL_METHOD:
            self._receive_cancel(data)
            return
        method = self.notifications.get(name)
        if method is not None:
            try:
                data = method.structure_request(data)
            except Exception as exc:
                reason = f"invalid data for notification {name}: {describe_error(exc, method.request)}"
                self._events.append(InvalidMessageReceived(reason=reason))
                return
        self._events.append(NotificationReceived(method=name, data=data))

    def _receive_cancel(self, data: Any) -> None:
        request_id = data.get("id") if type(data) is dict else None
        if type(request_id) is not int or not 0 <= request_id <= MAX_ID:
            self._events.append(InvalidMessageReceived(reason="$/cancel without a valid id"))
            return
        if request_id not in self.in_flight:
            return  # already answered: the cancel crossed our answer on the wire
        self._answer(
            request_id, _messages.protocol_error(request_id, ErrorCode.REQUEST_CANCELLED, "request cancelled")
        )
        self._cancelled.add(request_id, "cancelled")  # the handler's answer is dropped
        self._events.append(CancelRequested(request_id=request_id))

    # -- our answers -----------------------------------------------------------------

    def respond(self, request_id: int, result: Any) -> None:
        """Answer with a success (see `Connection.send_response`)."""
        # The lookup is inlined: this is the hot path of every answer.
        try:
            method = self.in_flight[request_id]
        except KeyError:
            self._check_dropped(request_id)
            return
        if method is not None:
            try:
                result = method.unstructure_response(result)
            except Exception as exc:
                raise not_sendable(exc) from None
        self._answer(request_id, _messages.response(request_id, result))

    def respond_error(self, request_id: int, error: Any) -> None:
        """Answer with an error value (see `Connection.send_error_response`)."""
        try:
            method = self.in_flight[request_id]
        except KeyError:
            self._check_dropped(request_id)
            return
        if method is not None:
            try:
                error = method.unstructure_error(error)
            except Exception as exc:
                raise not_sendable(exc) from None
        self._answer(request_id, _messages.error_response(request_id, error))

    def respond_protocol_error(self, request_id: int, code: int, message: str) -> None:
        """Answer with a protocol error object (see `Connection.send_protocol_error`)."""
        if request_id not in self.in_flight:
            self._check_dropped(request_id)
            return
        self._answer(request_id, _messages.protocol_error(request_id, code, message))

    def respond_outcome(self, request_id: int, result: Any, exception: BaseException | None) -> None:
        """Answer with what a handler gave (see `Connection.send_outcome`)."""
        if exception is None:
            try:
                self.respond(request_id, result)
                return
            except EncodingError as exc:
                exception = exc
        elif isinstance(exception, MethodError):
            try:
                self.respond_error(request_id, exception.error)
                return
            except EncodingError as exc:
                exception = exc
        elif isinstance(exception, ProtocolErrorResponse):
            # A handler passing on a protocol error object it got (a proxy): as it was.
            self.respond_protocol_error(request_id, exception.code, exception.message)
            return
        method = self.in_flight.get(request_id)
        logger.error(
            "handler of request %d (%s) failed",
            request_id,
            method.name if method is not None else "untyped",
            exc_info=exception,
        )
        message = "internal error"
        if self._expose:
            message = f"internal error: {type(exception).__name__}: {exception}"
        self.respond_protocol_error(request_id, ErrorCode.INTERNAL_ERROR, message)

    def _check_dropped(self, request_id: int) -> None:
        # No such request waits: an answer the peer cancelled, or given after the end, is
        # dropped (the handler lost a race it could not see); anything else is a bug.
        if request_id not in self._cancelled and not self.ended:
            raise LocalProtocolError(f"no request {request_id} waits for an answer (answered twice?)")

    def _answer(self, request_id: int, text: bytes) -> None:
        del self.in_flight[request_id]
        self._out.append(self._ws.send_text(text))

    def end(self) -> None:
        """The session is closing or closed: no request can be answered any more."""
        self.in_flight.clear()
        self.ended = True
