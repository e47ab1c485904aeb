"""Deadlines of requests: a heap with lazy deletion.

Answered requests are not removed from the heap (that would cost O(n)); their entries are
skipped when they reach the top, by checking them against the live deadline table.
"""

from __future__ import annotations

import heapq


class Deadlines:
    """Maps request ids to deadlines and finds the earliest one quickly."""

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, float] = {}

    def set(self, key: int, deadline: float) -> None:
        self._live[key] = deadline
        heapq.heappush(self._heap, (deadline, key))

    def __len__(self) -> int:
        return len(self._live)

    def discard(self, key: int) -> None:
        if self._live.pop(key, None) is not None and not self._live:
            self._heap.clear()

    def earliest(self) -> float | None:
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
