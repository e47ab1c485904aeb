"""aiohttp WebSockets (server and client) with hand-written id matching.

Configured fairly: no compression, `max_msg_size` large enough for 1 MiB, text frames sent
from the codec's bytes (`send_frame(..., TEXT)`) and received undecoded (`decode_text=False`)
with orjson. No access log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from ..common import HOST, MAX_MESSAGE, Codec, Pending, answer, request_message
from ..variants import Requester


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """An aiohttp application whose one route answers requests in its receive loop."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE, decode_text=False)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                reply = await answer(codec.loads(message.data))
                if reply is not None:
                    await ws.send_frame(codec.dumps(reply), WSMsgType.TEXT)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def _read(ws: aiohttp.ClientWebSocketResponse[Any], codec: Codec, pending: Pending) -> None:
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                pending.resolve(codec.loads(message.data))
    finally:
        pending.fail_all()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """An aiohttp client connection; a reader task resolves the futures of `Pending`."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            f"ws://{HOST}:{port}/", max_msg_size=MAX_MESSAGE, compress=0, decode_text=False
        ) as ws,
    ):
        pending = Pending()
        reader = asyncio.create_task(_read(ws, codec, pending))

        async def request(data: Any) -> Any:
            request_id, future = pending.new()
            await ws.send_frame(codec.dumps(request_message(request_id, data)), WSMsgType.TEXT)
            return await future

        try:
            yield request
        finally:
            await ws.close()
            await reader
