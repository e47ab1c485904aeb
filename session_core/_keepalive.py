"""Pings: the keepalive's and the user's, and which of them a pong acknowledges.

`Keepalive` writes the pings (through the connection's `WebSocket`, into its output); the
connection asks it what is due at each timer, and the reader hands it every pong.

session-rs answers every ping with an empty pong, whatever its payload: a pong acknowledges
the ping whose payload it echoes, or else the oldest, and every ping older than that.
"""

from __future__ import annotations

import enum

from ._messages import MAX_ID
from ._ws import WebSocket


class Due(enum.Enum):
    """What the keepalive asks for at a given time."""

    NOTHING = "nothing"
    PING = "ping"
    TIMEOUT = "timeout"


class Keepalive:
    """The pings in flight, the next keepalive ping and the deadline of its pong."""

    __slots__ = (
        "_count",
        "_interval",
        "_next_ping",
        "_out",
        "_pings",
        "_pong_deadline",
        "_sent_at",
        "_timeout",
        "_ws",
    )

    def __init__(
        self, interval: float | None, timeout: float | None, ws: WebSocket, out: list[bytes]
    ) -> None:
        self._ws, self._out = ws, out
        self._interval = interval
        self._timeout = timeout
        # Pings in flight, oldest first: (payload, user ping id or None for keepalive).
        self._pings: list[tuple[bytes, int | None]] = []
        self._count = 0
        self._next_ping: float | None = None
        self._sent_at = 0.0
        self._pong_deadline: float | None = None

    def start(self, now: float) -> None:
        """The session opened at `now`: the first keepalive ping is one interval away."""
        self._next_ping = None if self._interval is None else now + self._interval

    def timer(self) -> float | None:
        """When `due` has something to do next, or `None`."""
        return self._pong_deadline if self._pong_deadline is not None else self._next_ping

    def due(self, now: float, *, reading_paused: bool) -> Due:
        """What is due at `now`; a `Due.PING` is sent at once."""
        if self._pong_deadline is not None and now >= self._pong_deadline:
            if reading_paused:
                # Reading is paused (busy handlers): the pong may well be waiting unread.
                # A slow application is not a dead peer; wait for reading to resume.
                self._pong_deadline = now + (self._timeout or 0.0)
                return Due.NOTHING
            return Due.TIMEOUT
        if self._next_ping is not None and now >= self._next_ping:
            self._sent_at = now
            if self._timeout is None:
                self._next_ping = None if self._interval is None else now + self._interval
            else:
                self._next_ping = None
                self._pong_deadline = now + self._timeout
            self.ping(None)
            return Due.PING
        return Due.NOTHING

    def send_ping(self) -> int:
        """Send the user's ping; its id."""
        self._count += 1
        self.ping(self._count)
        return self._count

    def ping(self, ping_id: int | None) -> None:
        """Send a ping: the user's `ping_id`, or `None` for keepalive."""
        self._count += ping_id is None
        payload = (self._count & MAX_ID).to_bytes(4, "big")
        self._pings.append((payload, ping_id))
        self._out.append(self._ws.ping(payload))

    def handle_pong(self, payload: bytes) -> list[int]:
        """A pong arrived; the ids of the user's pings it acknowledges, oldest first."""
        pings = self._pings
        if not pings:
            return []
        count = 1  # an unknown payload (session-rs's empty pong) acknowledges the oldest
        for index, (sent, _) in enumerate(pings):
            if sent == payload:
                count = index + 1
                break
        acknowledged = [ping_id for _, ping_id in pings[:count] if ping_id is not None]
        del pings[:count]
        if self._pong_deadline is not None:
            self._pong_deadline = None
            interval = self._interval
            self._next_ping = None if interval is None else self._sent_at + interval
        return acknowledged

    def clear(self) -> None:
        """Forget the pings in flight (the connection ended)."""
        self._pings.clear()
