"""Test helpers: a client and a server `Connection` wired together in memory, and the raw
frames of the core tests (built with `tests.wire`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from session_core import (
    Config,
    Connection,
    ConnectionClosed,
    Event,
    Method,
    UpgradeRequested,
)
from tests import wire
from tests.wire import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "FIXED_MASK",
    "PING",
    "PONG",
    "SESSION_RS_ACCEPT",
    "SESSION_RS_UPGRADE",
    "TEXT",
    "Chunker",
    "SessionPair",
    "accept_for",
    "byte_by_byte",
    "client_frame",
    "frame",
    "open_client",
    "open_server",
    "parse_frames",
    "whole",
]

Chunker = Callable[[bytes], Iterable[bytes]]


def whole(data: bytes) -> Iterable[bytes]:
    """Deliver bytes as one piece."""
    return [data] if data else []


def byte_by_byte(data: bytes) -> Iterable[bytes]:
    """Deliver bytes one at a time."""
    return [data[i : i + 1] for i in range(len(data))]


class SessionPair:
    """A client and a server connection exchanging bytes in memory, in virtual time.

    `pump()` moves bytes both ways until both are quiet and collects each side's events
    into `client_events` and `server_events` (which tests read and clear as they like).
    """

    def __init__(
        self,
        *,
        config: Config | None = None,
        client_config: Config | None = None,
        server_config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        client_methods: Iterable[Method[Any, Any, Any]] | None = None,
        chunker: Chunker = whole,
        accept: bool = True,
        now: float = 0.0,
    ) -> None:
        self.now = now
        self.chunker = chunker
        self.client = Connection.client(
            "example.test:80", "/", now=now, config=client_config or config, methods=client_methods
        )
        self.server = Connection.server(now=now, config=server_config or config, methods=methods)
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.eof_given: set[Connection] = set()
        if accept:
            self.pump()
            upgrade = self.server_events.pop(0)
            assert isinstance(upgrade, UpgradeRequested)
            self.server.accept(now=self.now)
            self.pump()
            self.client_events.clear()

    def pump(self) -> None:
        """Move bytes until neither side has anything to send."""
        while True:
            moved = self._move(self.client, self.server, self.server_events)
            moved |= self._move(self.server, self.client, self.client_events)
            self.client_events += self.client.events()
            self.server_events += self.server.events()
            if not moved:
                return

    def _move(self, src: Connection, dst: Connection, dst_events: list[Event]) -> bool:
        data = src.data_to_send()
        for piece in self.chunker(data):
            dst.receive_data(piece, self.now)
            dst_events += dst.events()
        if src.should_close_transport and dst not in self.eof_given:
            self.eof_given.add(dst)
            dst.receive_eof()
            dst_events += dst.events()
            return True
        return bool(data)

    def advance(self, seconds: float) -> None:
        """Move virtual time on, firing both sides' timers in deadline order."""
        end = self.now + seconds
        while True:
            timers = [
                t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None and t <= end
            ]
            if not timers:
                break
            self.now = max(self.now, min(timers))
            for conn in (self.client, self.server):
                timer = conn.get_timer()
                if timer is not None and timer <= self.now:
                    conn.handle_timer(self.now)
            self.pump()
        self.now = end

    def closed(self, events: list[Event]) -> ConnectionClosed | None:
        found = [e for e in events if isinstance(e, ConnectionClosed)]
        assert len(found) <= 1
        return found[0] if found else None


# --- raw frames, for peers that this project did not write (the codec is `tests.wire`) ---

#: The masking key of `client_frame`: fixed, so that the bytes a test builds are the same
#: on every run.
FIXED_MASK = b"\x11\x22\x33\x44"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One RFC 6455 frame; masked when `mask` (4 bytes) is given, as a client sends."""
    return wire.encode_frame(opcode, payload, fin=fin, mask=mask)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked frame, as a client must send it."""
    return wire.client_frame(opcode, payload, fin=fin, mask=FIXED_MASK)


def parse_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """Split bytes into `(opcode, fin, unmasked payload)` frames; all must be complete."""
    return [(f.opcode, f.fin, f.payload) for f in wire.parse_frames(data)]


#: The upgrade request session-rs's client sends (from the capture in docs/protocol.md).
SESSION_RS_UPGRADE = wire.upgrade_request()
#: The 101 that session-rs's server answers it with.
SESSION_RS_ACCEPT = wire.switching_protocols()


def open_server(
    config: Config | None = None, methods: Iterable[Method[Any, Any, Any]] | None = None
) -> Connection:
    """A server connection that accepted session-rs's captured upgrade request."""
    server = Connection.server(now=0.0, config=config, methods=methods)
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    assert isinstance(server.next_event(), UpgradeRequested)
    server.accept(now=0.0)
    server.data_to_send()
    return server


def open_client(
    config: Config | None = None, methods: Iterable[Method[Any, Any, Any]] | None = None
) -> Connection:
    """A client connection whose upgrade a raw peer accepted; returns with no events left."""
    client = Connection.client(wire.SESSION_RS_HOST, "/", now=0.0, config=config, methods=methods)
    client.receive_data(wire.accept_response(client.data_to_send()), 0.0)
    client.events()
    return client


def accept_for(key: bytes) -> bytes:
    """A minimal 101 answering a client's `Sec-WebSocket-Key`."""
    return wire.switching_protocols(key)
