"""trio-websocket with hand-written id matching.

Configured fairly: `max_message_size` large enough for 1 MiB, 64 KiB reads (as session_trio)
instead of the 4 KiB default, and a message queue of 128 (session-py's default bound on
incoming requests) instead of 1. Its API sends text frames from `str` only, so the orjson
bytes are decoded before sending; messages arrive as `str`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, open_websocket_url
from trio_websocket import serve_websocket as ws_serve

from ..common import HOST, MAX_MESSAGE, Codec, answer, request_message
from ..variants import Requester
from ._trio_pending import TrioPending

READ_SIZE = 64 * 1024
QUEUE = 128


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """A trio-websocket server answering each request in its receive loop."""

    async def handler(ws_request: WebSocketRequest) -> None:
        ws = await ws_request.accept()
        try:
            while True:
                reply = await answer(codec.loads(await ws.get_message()))
                if reply is not None:
                    await ws.send_message(codec.dumps_text(reply))
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                ws_serve,
                handler,
                HOST,
                0,
                None,
                max_message_size=MAX_MESSAGE,
                receive_buffer_size=READ_SIZE,
                message_queue_size=QUEUE,
            )
        )
        yield int(server.port)
        nursery.cancel_scope.cancel()


async def _read(ws: WebSocketConnection, codec: Codec, pending: TrioPending) -> None:
    try:
        while True:
            pending.resolve(codec.loads(await ws.get_message()))
    except ConnectionClosed:
        pass
    finally:
        pending.fail_all()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """A trio-websocket client; a reader task resolves the slots of `TrioPending`."""
    async with (
        open_websocket_url(
            f"ws://{HOST}:{port}/",
            max_message_size=MAX_MESSAGE,
            receive_buffer_size=READ_SIZE,
            message_queue_size=QUEUE,
        ) as ws,
        trio.open_nursery() as nursery,
    ):
        pending = TrioPending()
        nursery.start_soon(_read, ws, codec, pending)

        async def request(data: Any) -> Any:
            request_id, slot = pending.new()
            await ws.send_message(codec.dumps_text(request_message(request_id, data)))
            return await slot.wait()

        yield request
        await ws.aclose()
