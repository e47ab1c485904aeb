"""`websockets` (its asyncio API) with hand-written id matching, as users write it.

Configured fairly: no compression (session-py offers none), `max_size` large enough for the
1 MiB payload, text frames sent from bytes (`send(..., text=True)`) and received without
decoding (`recv(decode=False)`) when the codec is orjson, so nothing is transcoded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from ..common import HOST, MAX_MESSAGE, Codec, Pending, answer, request_message
from ..variants import Requester


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """A `websockets` server answering each request in its receive loop."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                if codec.text_native:
                    reply = await answer(codec.loads(await ws.recv()))
                    if reply is not None:
                        await ws.send(codec.dumps_text(reply))
                else:
                    reply = await answer(codec.loads(await ws.recv(decode=False)))
                    if reply is not None:
                        await ws.send(codec.dumps(reply), text=True)

    async with ws_serve(handler, HOST, 0, compression=None, max_size=MAX_MESSAGE) as server:
        yield int(next(iter(server.sockets)).getsockname()[1])


async def _read(ws: ClientConnection, codec: Codec, pending: Pending) -> None:
    try:
        while True:
            if codec.text_native:
                pending.resolve(codec.loads(await ws.recv()))
            else:
                pending.resolve(codec.loads(await ws.recv(decode=False)))
    except ConnectionClosed:
        pass
    finally:
        pending.fail_all()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """A `websockets` client: a reader task resolves the futures of `Pending`."""
    async with ws_connect(f"ws://{HOST}:{port}/", compression=None, max_size=MAX_MESSAGE) as ws:
        pending = Pending()
        reader = asyncio.create_task(_read(ws, codec, pending))

        async def request(data: Any) -> Any:
            request_id, future = pending.new()
            if codec.text_native:
                await ws.send(codec.dumps_text(request_message(request_id, data)))
            else:
                await ws.send(codec.dumps(request_message(request_id, data)), text=True)
            return await future

        try:
            yield request
        finally:
            await ws.close()
            await reader
