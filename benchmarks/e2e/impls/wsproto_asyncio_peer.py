"""wsproto driven by hand under an asyncio Protocol, with hand-written id matching.

What a user who wants no WebSocket framework writes: bytes into `WSConnection`, events
out, `transport.write` of what it produces. The server answers in `data_received` with the
synchronous echo handler (a Protocol cannot await).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from ..common import HOST, Codec, ConnectionLost, Pending, answer_now, request_message
from ..variants import Requester


class _Peer(asyncio.Protocol):
    """The part both roles share: feeding wsproto and reassembling text messages."""

    def __init__(self, codec: Codec, role: ConnectionType) -> None:
        self.codec = codec
        self.ws = WSConnection(role)
        self.transport: asyncio.Transport | None = None
        self._parts: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def on_message(self, message: Any, out: list[bytes]) -> None:
        raise NotImplementedError

    def on_other(self, event: Event, out: list[bytes]) -> None:
        """Handshake events."""

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        out: list[bytes] = []
        close = False
        for event in ws.events():
            if isinstance(event, TextMessage):
                if not event.message_finished:
                    self._parts.append(event.data)
                    continue
                text = event.data
                if self._parts:
                    self._parts.append(text)
                    text = "".join(self._parts)
                    self._parts.clear()
                self.on_message(self.codec.loads(text), out)
            elif isinstance(event, Ping):
                out.append(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.REMOTE_CLOSING:
                    out.append(ws.send(event.response()))
                close = True
            else:
                self.on_other(event, out)
        assert self.transport is not None
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


class _Server(_Peer):
    def __init__(self, codec: Codec) -> None:
        super().__init__(codec, ConnectionType.SERVER)

    def on_other(self, event: Event, out: list[bytes]) -> None:
        if isinstance(event, Request):
            out.append(self.ws.send(AcceptConnection()))

    def on_message(self, message: Any, out: list[bytes]) -> None:
        reply = answer_now(message)
        if reply is not None:
            out.append(self.ws.send(Message(data=self.codec.dumps_text(reply))))


class _Client(_Peer):
    def __init__(self, codec: Codec, host: str) -> None:
        super().__init__(codec, ConnectionType.CLIENT)
        loop = asyncio.get_running_loop()
        self.host = host
        self.pending = Pending()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.write(self.ws.send(Request(host=self.host, target="/")))

    def on_other(self, event: Event, out: list[bytes]) -> None:
        if isinstance(event, AcceptConnection) and not self.opened.done():
            self.opened.set_result(None)
        elif isinstance(event, RejectConnection) and not self.opened.done():
            self.opened.set_exception(ConnectionLost(f"upgrade rejected: {event.status_code}"))

    def on_message(self, message: Any, out: list[bytes]) -> None:
        self.pending.resolve(message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pending.fail_all()
        if not self.opened.done():
            self.opened.set_exception(ConnectionLost("connection lost during the handshake"))
        if not self.lost.done():
            self.lost.set_result(None)

    async def request(self, data: Any) -> Any:
        request_id, future = self.pending.new()
        assert self.transport is not None
        self.transport.write(
            self.ws.send(Message(data=self.codec.dumps_text(request_message(request_id, data))))
        )
        return await future


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """A server of `_Server` protocols."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Server(codec), HOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """A client connection; the protocol's `request` is the request function."""
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: _Client(codec, f"{HOST}:{port}"), HOST, port)
    try:
        await client.opened
        yield client.request
    finally:
        assert client.transport is not None
        if client.ws.state is ConnectionState.OPEN:
            client.transport.write(client.ws.send(CloseConnection(code=1000)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await client.lost
        client.transport.abort()
