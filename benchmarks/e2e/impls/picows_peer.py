"""picows (callback listeners, Cython framing) with hand-written id matching.

Callbacks cannot await, so the server calls the synchronous echo handler and the client
resolves futures from `on_ws_frame`. Fragmented messages are reassembled (no peer here
sends any). Auto-pong is on, auto-ping off (as for session-py, whose keepalive pings every
20 s: none during a run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect, ws_create_server

from ..common import HOST, MAX_MESSAGE, Codec, Pending, answer_now, request_message
from ..variants import Requester


class _Assembler(WSListener):
    """Yields whole text messages to `on_text`, whatever the framing."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._parts: list[bytes] | None = None

    def on_text(self, transport: WSTransport, message: Any) -> None:
        raise NotImplementedError

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT and frame.fin:
            self.on_text(transport, self.codec.loads(frame.get_payload_as_memoryview()))
        elif kind is WSMsgType.TEXT:
            self._parts = [frame.get_payload_as_bytes()]
        elif kind is WSMsgType.CONTINUATION and self._parts is not None:
            self._parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                data, self._parts = b"".join(self._parts), None
                self.on_text(transport, self.codec.loads(data))
        elif kind is WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()


class _Server(_Assembler):
    def on_text(self, transport: WSTransport, message: Any) -> None:
        reply = answer_now(message)
        if reply is not None:
            transport.send(WSMsgType.TEXT, self.codec.dumps(reply))


class _Client(_Assembler):
    def __init__(self, codec: Codec, pending: Pending) -> None:
        super().__init__(codec)
        self.pending = pending

    def on_text(self, transport: WSTransport, message: Any) -> None:
        self.pending.resolve(message)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.pending.fail_all()


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """A picows server."""
    server = await ws_create_server(lambda _request: _Server(codec), HOST, 0, max_frame_size=MAX_MESSAGE)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """A picows client connection."""
    pending = Pending()
    transport, _listener = await ws_connect(
        lambda: _Client(codec, pending), f"ws://{HOST}:{port}/", max_frame_size=MAX_MESSAGE
    )

    async def request(data: Any) -> Any:
        request_id, future = pending.new()
        transport.send(WSMsgType.TEXT, codec.dumps(request_message(request_id, data)))
        return await future

    try:
        yield request
    finally:
        transport.send_close(WSCloseCode.OK)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await transport.wait_disconnected()
        transport.disconnect(graceful=False)
