"""The benchmark's clients: one small WebSocket client, two dialects (session, Socket.IO).

Both stacks' clients are this same code, on the same loop, in the orchestrator's process,
so the client side costs both stacks alike and little: frames from the server are parsed
straight from the transport's bytes (no library), and only the payload is decoded. What
differs is the dialect: session's JSON messages, or Engine.IO/Socket.IO packets (`0` open,
`40` connect, `2`/`3` ping/pong, `42[...]` events, `42<id>[...]`/`43<id>[...]` calls and
their answers), which is all a Socket.IO client speaks over a WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

import orjson

from .common import EVENT, HELLO, HOST

OnData = Callable[[int, Any, float], None]
"`on_data(client_index, payload, receive_time)`, for each fan-out message."


def _mask(data: bytes, key: bytes) -> bytes:
    # XOR with the 4-byte key over the whole payload at once (as one big integer).
    n = len(data)
    if n == 0:
        return data
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(keys, "little")).to_bytes(n, "little")


def frame(opcode: int, data: bytes) -> bytes:
    """A final client frame (masked, as RFC 6455 requires of clients)."""
    n = len(data)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return header + key + _mask(data, key)


class Client(asyncio.Protocol):
    """One WebSocket client. `ready` resolves with the session id the server gave it."""

    def __init__(self, index: int, dialect: str, path: str, on_data: OnData) -> None:
        self.index = index
        self.dialect = dialect
        self.path = path
        self.on_data = on_data
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[str] = loop.create_future()
        self.ended: asyncio.Future[int | None] = loop.create_future()
        self.received = 0
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: bytearray | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the server said hello"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[: buffer.find(b"\r\n")])
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            del buffer[: end + 4]
            self._upgraded = True
        now = time.monotonic()
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, start = second & 0x7F, offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length, start = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, start = int.from_bytes(buffer[offset + 2 : offset + 10], "big"), offset + 10
            if second & 0x80 or size - start < length:
                if second & 0x80:
                    self._fail("masked frame from the server")
                break
            self._frame(first, bytes(buffer[start : start + length]), now)
            offset = start + length
        del buffer[:offset]

    # -- frames and messages ---------------------------------------------------------------

    def _frame(self, first: int, data: bytes, now: float) -> None:
        opcode, final = first & 0x0F, first & 0x80
        if opcode == 0x9:
            self.send(0xA, data)
        elif opcode == 0x8:
            code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            if not self.ended.done():
                self.ended.set_result(code)
            self.send(0x8, data[:2])
            if self.transport is not None:
                self.transport.close()
        elif opcode in (0x1, 0x2, 0x0):
            if opcode != 0x0 and final:
                self._message(data, now)
            elif opcode != 0x0:
                self._fragments = bytearray(data)
            elif self._fragments is not None:
                self._fragments += data
                if final:
                    whole, self._fragments = bytes(self._fragments), None
                    self._message(whole, now)

    def _message(self, data: bytes, now: float) -> None:
        if self.dialect == "session_hub":
            self._session_message(data, now)
        else:
            self._socketio_message(data, now)

    def _session_message(self, data: bytes, now: float) -> None:
        message = orjson.loads(data)
        kind = message.get("type")
        if kind == "notification":
            if message.get("method") == EVENT:
                self.received += 1
                self.on_data(self.index, message.get("data"), now)
            elif message.get("method") == HELLO and not self.ready.done():
                self.ready.set_result(message.get("data"))
        elif kind == "request":
            # The echo method: the request's data back.
            answer = {"type": "response", "id": message["id"], "result": message.get("data")}
            self.send(0x1, orjson.dumps(answer))

    def _socketio_message(self, data: bytes, now: float) -> None:
        if data.startswith(b"42"):
            bracket = data.find(b"[")
            ack = data[2:bracket]
            args = orjson.loads(data[bracket:])
            if ack:
                # A call: answer with its arguments (the echo), under the same ack id.
                self.send(0x1, b"43" + ack + orjson.dumps(args[1:]))
            elif args and args[0] == EVENT:
                self.received += 1
                self.on_data(self.index, args[1], now)
        elif data == b"2":
            self.send(0x1, b"3")
        elif data.startswith(b"40"):
            if not self.ready.done():
                self.ready.set_result(orjson.loads(data[2:])["sid"])
        elif data.startswith(b"0"):
            self.send(0x1, b"40")
        elif data.startswith((b"41", b"44")):
            self._fail(f"Socket.IO: {data[:200]!r}")

    def send(self, opcode: int, data: bytes) -> None:
        """Send one frame (dropped once the transport is closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(opcode, data))

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self.transport is not None:
            self.transport.abort()


async def connect(
    index: int, dialect: str, port: int, groups: list[str], on_data: OnData, *, receive_buffer: int = 0
) -> Client:
    """Open a client of `dialect` to the server on `port`, member of `groups`.

    Args:
        index: the client's number, given back to `on_data`.
        dialect: `session_hub` or `socketio`.
        port: the server's port on the loopback interface.
        groups: the groups the server makes it join.
        on_data: called with each fan-out message.
        receive_buffer: a small kernel receive buffer (bytes) for a client meant to be
            slow, so that not reading reaches the server quickly (0: the system's default).

    Returns:
        The client, not yet ready (await `client.ready` for its id).
    """
    query = "g=" + ",".join(groups)
    path = f"/?{query}" if dialect == "session_hub" else f"/socket.io/?EIO=4&transport=websocket&{query}"
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    _, client = await loop.create_connection(lambda: Client(index, dialect, path, on_data), sock=sock)
    return client
