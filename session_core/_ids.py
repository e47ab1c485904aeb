"""Request ids (`PROTOCOL.md`, "Request ids") and the memory of requests given up on."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container

from ._errors import LocalProtocolError
from ._messages import MAX_ID

FIRST_ID = 1


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
        self._ids[request_id] = why
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def pop(self, request_id: int) -> str | None:
        return self._ids.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids
