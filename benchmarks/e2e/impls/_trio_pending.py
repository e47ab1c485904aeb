"""Hand-written id matching for trio clients: a dict of events keyed by request id."""

from __future__ import annotations

from typing import Any

import trio

from ..common import ConnectionLost, RemoteFailure


class Slot:
    """Where the answer to one request lands."""

    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None
        self.error: Exception | None = None

    async def wait(self) -> Any:
        """The answer's result (or its error raised)."""
        await self.event.wait()
        if self.error is not None:
            raise self.error
        return self.value


class TrioPending:
    """Request ids and the slots their answers resolve."""

    __slots__ = ("_next_id", "_slots")

    def __init__(self) -> None:
        self._slots: dict[int, Slot] = {}
        self._next_id = 0

    def new(self) -> tuple[int, Slot]:
        """A fresh request id and its slot."""
        self._next_id += 1
        slot = Slot()
        self._slots[self._next_id] = slot
        return self._next_id, slot

    def resolve(self, message: Any) -> None:
        """Hand a decoded answer to whoever waits for it (others are ignored)."""
        if not isinstance(message, dict):
            return
        slot = self._slots.pop(message.get("id"), None)  # type: ignore[arg-type]
        if slot is None:
            return
        if message.get("type") == "response":
            slot.value = message.get("result")
        else:
            slot.error = RemoteFailure(repr(message.get("error")))
        slot.event.set()

    def fail_all(self, reason: str = "connection lost") -> None:
        """Fail every waiting request: the connection is gone."""
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.error = ConnectionLost(reason)
            slot.event.set()
