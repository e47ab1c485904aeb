"""The floor: no WebSocket at all. An asyncio Protocol, 4-byte big-endian length + JSON.

The same messages and codec as every other peer, the same hand-written id matching, and
nothing else: what any WebSocket layer adds is measured against this.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from ..common import HOST, Codec, Pending, answer_now, request_message
from ..variants import Requester


class Deframer:
    """Splits a byte stream into length-prefixed messages."""

    __slots__ = ("_buffer", "_need")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._need = 4

    def feed(self, data: bytes) -> list[bytes]:
        """The messages `data` completes (their bodies)."""
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            if self._need == 4:
                self._need = 4 + int.from_bytes(buffer[:4], "big")
                if len(buffer) < self._need:
                    return []
            data = bytes(buffer)
            buffer.clear()
        messages: list[bytes] = []
        pos = 0
        end = len(data)
        while end - pos >= 4:
            stop = pos + 4 + int.from_bytes(data[pos : pos + 4], "big")
            if stop > end:
                break
            messages.append(data[pos + 4 : stop])
            pos = stop
        if pos < end:
            buffer += data[pos:]
            self._need = 4 if end - pos < 4 else 4 + int.from_bytes(data[pos : pos + 4], "big")
        return messages


def frame(body: bytes) -> bytes:
    """One message on the wire."""
    return len(body).to_bytes(4, "big") + body


class _Server(asyncio.Protocol):
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.deframer = Deframer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        codec = self.codec
        out: list[bytes] = []
        for body in self.deframer.feed(data):
            reply = answer_now(codec.loads(body))
            if reply is not None:
                out.append(frame(codec.dumps(reply)))
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))


class _Client(asyncio.Protocol):
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.deframer = Deframer()
        self.pending = Pending()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        for body in self.deframer.feed(data):
            self.pending.resolve(self.codec.loads(body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.pending.fail_all()
        if not self.lost.done():
            self.lost.set_result(None)

    async def request(self, data: Any) -> Any:
        request_id, future = self.pending.new()
        assert self.transport is not None
        self.transport.write(frame(self.codec.dumps(request_message(request_id, data))))
        return await future


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """A length-prefixed JSON server."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Server(codec), HOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """A length-prefixed JSON client connection."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: _Client(codec), HOST, port)
    try:
        yield client.request
    finally:
        transport.close()
        await client.lost
