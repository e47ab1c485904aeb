"""Our requests and notifications: sending them, their ids, the table of those waiting
for answers, their deadlines, the answers, and the memory of those given up on
(`docs/protocol.md`, "Request ids").

`OutgoingRequests` writes what we send (through the connection's `WebSocket`, into its
output) and reports what becomes of our requests (into its events); the connection checks
its state first and calls in.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Container
from typing import Any

from . import _messages
from ._config import Config
from ._errors import LocalProtocolError, TooManyPendingRequests
from ._events import (
    ErrorResponseReceived,
    Event,
    InvalidResponseReceived,
    RequestAborted,
    RequestTimedOut,
    ResponseReceived,
    UnexpectedResponseReceived,
)
from ._messages import CANCEL_METHOD, MAX_ID, Kind
from ._methods import Method, describe_error, not_sendable
from ._ws import WebSocket

FIRST_ID = 1

#: What waits for an answer: the `Method` a request was sent with, or its bare name.
Sent = Method[Any, Any, Any] | str


class IdAllocator:
    """Numbers our own requests: 1, 2, ... 4294967295, then 1 again, skipping pending ids."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = FIRST_ID

    def allocate(self, pending: Container[int]) -> int:
        """The next id that is not in `pending`."""
        request_id = self._next
        if request_id not in pending:  # nearly always: no loop
            self._next = request_id + 1 if request_id < MAX_ID else FIRST_ID
            return request_id
        for _ in range(MAX_ID):
            request_id = self._next
            self._next = request_id + 1 if request_id < MAX_ID else FIRST_ID
            if request_id not in pending:
                return request_id
        raise LocalProtocolError("every request id is pending")  # pragma: no cover


class RecentIds:
    """A bounded memory of ids and why they were dropped, oldest forgotten first.

    It lets a late answer be reported as late ("timed out") instead of unknown, without
    letting memory grow with every request ever given up on.
    """

    __slots__ = ("_ids", "_limit")

    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[int, str] = OrderedDict()
        self._limit = limit

    def add(self, request_id: int, why: str) -> None:
        """Remember `request_id`, dropped for the reason `why`."""
        self._ids[request_id] = why
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def pop(self, request_id: int) -> str | None:
        """Forget `request_id`; why it was dropped, or `None` if it was not remembered."""
        return self._ids.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids


class Deadlines:
    """Maps request ids to deadlines and finds the earliest one quickly.

    A heap with lazy deletion: answered requests are not removed from the heap (that would
    cost O(n)); their entries are skipped when they reach the top, by checking them against
    the live deadline table.
    """

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, float] = {}

    def set(self, key: int, deadline: float) -> None:
        """Give `key` a deadline."""
        self._live[key] = deadline
        heapq.heappush(self._heap, (deadline, key))

    def __len__(self) -> int:
        return len(self._live)

    def discard(self, key: int) -> None:
        """Forget the deadline of `key`, if it has one."""
        if self._live.pop(key, None) is not None and not self._live:
            self._heap.clear()

    def earliest(self) -> float | None:
        """The earliest live deadline, or `None`."""
        heap, live = self._heap, self._live
        while heap:
            deadline, key = heap[0]
            if live.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_expired(self, now: float) -> list[int]:
        """Remove and return the keys whose deadline is at or before `now`, earliest first."""
        expired = []
        while (deadline := self.earliest()) is not None and deadline <= now:
            _, key = heapq.heappop(self._heap)
            del self._live[key]
            expired.append(key)
        return expired


class OutgoingRequests:
    """Our requests that wait for answers, the ids given up on, and sending."""

    __slots__ = ("_deadlines", "_events", "_given_up", "_ids", "_limit", "_out", "_timeout", "_ws", "pending")

    def __init__(self, config: Config, ws: WebSocket, out: list[bytes], events: list[Event]) -> None:
        self._ws, self._out, self._events = ws, out, events
        self._limit = config.max_pending_requests
        self._timeout = config.request_timeout
        self._ids = IdAllocator()
        self.pending: dict[int, Sent] = {}
        "What each request waiting for its answer was sent with."
        self._deadlines = Deadlines()
        self._given_up = RecentIds(config.remembered_ids)

    def __len__(self) -> int:
        return len(self.pending)

    def send(self, method: object, data: Any, now: float | None, timeout: float | None) -> int:
        """Send a request (see `Connection.send_request`); its id."""
        pending = self.pending
        if len(pending) >= self._limit:
            raise TooManyPendingRequests(f"{len(pending)} requests already wait for answers")
        if timeout is None:
            timeout = self._timeout
        deadline = None
        if timeout is not None:
            if now is None:
                raise LocalProtocolError("a request with a timeout needs `now`")
            deadline = now + timeout
        sent, name, value = _checked(method, data)
        request_id = self._ids.allocate(pending)
        # Encoded before it counts as pending: data that cannot be sent leaves nothing behind.
        self._out.append(self._ws.send_text(_messages.request(request_id, name, value)))
        pending[request_id] = sent
        if self._given_up:
            self._given_up.pop(request_id)  # a reused id: an answer to it is for this one
        if deadline is not None:
            self._deadlines.set(request_id, deadline)
        return request_id

    def notify(self, method: object, data: Any) -> None:
        """Send a notification (see `Connection.send_notification`)."""
        _, name, value = _checked(method, data)
        self._out.append(self._ws.send_text(_messages.notification(name, value)))

    def receive_answer(self, kind: Kind, request_id: int, payload: Any) -> None:
        """The peer answered (`kind` is a response or an error response) our `request_id`."""
        method = self.pending.pop(request_id, None)
        if method is None:
            reason = self._given_up.pop(request_id)
            if reason is not None and kind is Kind.ERROR_RESPONSE and _messages.is_cancelled_answer(payload):
                return  # the peer confirms the `$/cancel` we sent: expected, nothing to report
            self._events.append(
                UnexpectedResponseReceived(request_id=request_id, reason=reason or "unknown id")
            )
            return
        if self._deadlines:
            self._deadlines.discard(request_id)
        name = method.name if isinstance(method, Method) else method
        event: Event
        try:
            if kind is Kind.RESPONSE:
                result = method.structure_response(payload) if isinstance(method, Method) else payload
                event = ResponseReceived(request_id=request_id, method=name, result=result)
            elif _messages.is_protocol_error(payload):
                event = ErrorResponseReceived(
                    request_id=request_id,
                    method=name,
                    error=payload,
                    code=payload["code"],
                    message=payload["message"],
                )
            else:
                error = method.structure_error(payload) if isinstance(method, Method) else payload
                event = ErrorResponseReceived(request_id=request_id, method=name, error=error)
        except Exception as exc:
            assert isinstance(method, Method)
            expected = method.response if kind is Kind.RESPONSE else method.error
            reason = describe_error(exc, expected)
            event = InvalidResponseReceived(request_id=request_id, method=name, reason=reason)
        self._events.append(event)

    def cancel(self, request_id: int) -> bool:
        """Give up `request_id` (see `Connection.cancel_request`); whether it was pending."""
        if request_id not in self.pending:
            return False
        self._give_up(request_id, "cancelled")
        return True

    def expire(self, now: float) -> None:
        """Give up every request whose deadline is at or before `now`."""
        for request_id in self._deadlines.pop_expired(now):
            name = self._give_up(request_id, "timed out")
            self._events.append(RequestTimedOut(request_id=request_id, method=name))

    def _give_up(self, request_id: int, why: str) -> str:
        # Requests are pending only while the session is open (the end aborts them all), so
        # the `$/cancel` may always be sent.
        sent = self.pending.pop(request_id)
        self._deadlines.discard(request_id)
        self._given_up.add(request_id, why)
        self._out.append(self._ws.send_text(_messages.notification(CANCEL_METHOD, {"id": request_id})))
        return name_of(sent)

    def earliest_deadline(self) -> float | None:
        """The earliest deadline of a pending request, or `None`."""
        return self._deadlines.earliest()

    def abort(self, code: int, reason: str) -> None:
        """The session ends with `code` and `reason`: every pending request fails."""
        pending = self.pending
        if not pending:
            return
        for request_id, sent in pending.items():
            self._events.append(
                RequestAborted(request_id=request_id, method=name_of(sent), code=code, reason=reason)
            )
        pending.clear()
        self._deadlines = Deadlines()


def _checked(method: object, data: Any) -> tuple[Sent, str, Any]:
    """What a request or notification is sent with (a `Method` or a name), its name, and
    its data as JSON values."""
    if isinstance(method, Method):
        try:
            return method, method.name, method.unstructure_request(data)
        except Exception as exc:
            raise not_sendable(exc) from None
    if isinstance(method, str):
        return method, method, data
    # Checked here, not left to the type hints: the compiled build would raise `TypeError`
    # and the pure one send anything as a name.
    raise LocalProtocolError(f"a method is a Method or a name, not {type(method).__name__}")


def name_of(sent: Sent) -> str:
    """The method name of what a request was sent with."""
    return sent.name if isinstance(sent, Method) else sent
