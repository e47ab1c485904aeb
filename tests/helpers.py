"""Test helpers: a client and a server `Connection` wired together in memory."""

from __future__ import annotations

import base64
import hashlib
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


# --- raw frames, for peers that this project did not write -------------------------------

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One RFC 6455 frame; masked when `mask` (4 bytes) is given, as a client sends."""
    head = bytes([(0x80 if fin else 0) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked frame, as a client must send it."""
    return frame(opcode, payload, fin=fin, mask=b"\x11\x22\x33\x44")


def parse_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """Split bytes into `(opcode, fin, unmasked payload)` frames; all must be complete."""
    frames = []
    i = 0
    while i < len(data):
        fin, opcode = bool(data[i] & 0x80), data[i] & 0x0F
        masked, length = bool(data[i + 1] & 0x80), data[i + 1] & 0x7F
        i += 2
        if length == 126:
            length, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i : i + 8], "big"), i + 8
        key = data[i : i + 4] if masked else b""
        i += 4 if masked else 0
        payload = data[i : i + length]
        if masked:
            payload = bytes(b ^ key[j % 4] for j, b in enumerate(payload))
        frames.append((opcode, fin, payload))
        i += length
    assert i == len(data), "incomplete frame"
    return frames


#: The upgrade request session-rs's client sends (from PROTOCOL.md's capture).
SESSION_RS_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9101\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: vd2wAgQkrd3IegFCB5L43Q==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: The 101 that session-rs's server answers it with.
SESSION_RS_ACCEPT = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: Oru0+maGfqLIC22es8Lg7asg6T8=\r\n\r\n"
)


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
    client = Connection.client("127.0.0.1:9101", "/", now=0.0, config=config, methods=methods)
    request = client.data_to_send()
    key = [
        line.split(b": ")[1]
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    ]
    client.receive_data(accept_for(key[0]), 0.0)
    client.events()
    return client


def accept_for(key: bytes) -> bytes:
    """A minimal 101 answering a client's `Sec-WebSocket-Key`."""
    token = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + token + b"\r\n\r\n"
    )
