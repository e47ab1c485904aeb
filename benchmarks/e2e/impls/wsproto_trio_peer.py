"""wsproto driven by hand over trio streams, with hand-written id matching.

The server answers each request in its receive loop (awaiting the echo handler); the
client runs a reader task and serializes its writes with a lock (a trio stream allows
one `send_all` at a time).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from ..common import HOST, Codec, ConnectionLost, answer, request_message
from ..variants import Requester
from ._trio_pending import TrioPending

READ_SIZE = 64 * 1024


class _Texts:
    """Reassembles text messages from wsproto's (possibly partial) TextMessage events."""

    def __init__(self) -> None:
        self._parts: list[str] = []

    def take(self, event: TextMessage) -> str | None:
        if not event.message_finished:
            self._parts.append(event.data)
            return None
        if not self._parts:
            return event.data
        self._parts.append(event.data)
        text = "".join(self._parts)
        self._parts.clear()
        return text


async def _serve_one(stream: trio.SocketStream, codec: Codec) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    texts = _Texts()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(READ_SIZE)
            except trio.BrokenResourceError:
                return
            ws.receive_data(data or None)
            out: list[bytes] = []
            close = not data
            for event in ws.events():
                if isinstance(event, TextMessage):
                    text = texts.take(event)
                    if text is not None:
                        reply = await answer(codec.loads(text))
                        if reply is not None:
                            out.append(ws.send(Message(data=codec.dumps_text(reply))))
                elif isinstance(event, Request):
                    out.append(ws.send(AcceptConnection()))
                elif isinstance(event, Ping):
                    out.append(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if ws.state is ConnectionState.REMOTE_CLOSING:
                        out.append(ws.send(event.response()))
                    close = True
            if out:
                try:
                    await stream.send_all(b"".join(out))
                except trio.BrokenResourceError:
                    return
            if close:
                return


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """A trio TCP server of hand-driven wsproto connections."""

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_one(stream, codec)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host=HOST))
        yield int(listeners[0].socket.getsockname()[1])
        nursery.cancel_scope.cancel()


class _Client:
    def __init__(self, stream: trio.SocketStream, codec: Codec) -> None:
        self.stream = stream
        self.codec = codec
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending = TrioPending()
        self.lock = trio.Lock()
        self.opened = trio.Event()
        self.done = trio.Event()
        self.texts = _Texts()

    async def send(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def read(self) -> None:
        ws = self.ws
        try:
            while True:
                try:
                    data = await self.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                ws.receive_data(data or None)
                out: list[bytes] = []
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        text = self.texts.take(event)
                        if text is not None:
                            self.pending.resolve(self.codec.loads(text))
                    elif isinstance(event, AcceptConnection):
                        self.opened.set()
                    elif isinstance(event, RejectConnection):
                        return
                    elif isinstance(event, Ping):
                        out.append(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if ws.state is ConnectionState.REMOTE_CLOSING:
                            out.append(ws.send(event.response()))
                        data = b""
                if out:
                    await self.send(b"".join(out))
                if not data:
                    return
        finally:
            self.pending.fail_all()
            self.opened.set()
            self.done.set()

    async def request(self, data: Any) -> Any:
        request_id, slot = self.pending.new()
        await self.send(self.ws.send(Message(data=self.codec.dumps_text(request_message(request_id, data)))))
        return await slot.wait()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """A client connection with its reader task."""
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream, trio.open_nursery() as nursery:
        client = _Client(stream, codec)
        await client.send(client.ws.send(Request(host=f"{HOST}:{port}", target="/")))
        nursery.start_soon(client.read)
        await client.opened.wait()
        if client.ws.state is not ConnectionState.OPEN:
            raise ConnectionLost("the WebSocket handshake failed")
        yield client.request
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await client.send(client.ws.send(CloseConnection(code=1000)))
        with trio.move_on_after(5):
            await client.done.wait()
        nursery.cancel_scope.cancel()
