"""session-py over asyncio (and uvloop): the project's own adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import session_asyncio
from session_core import Config, Method

from ..common import HOST, MAX_MESSAGE, METHOD, Codec
from ..variants import Requester

echo: Method[Any, Any, str] = Method(METHOD, request=Any, response=Any, error=str)
CONFIG = Config(max_message_size=MAX_MESSAGE)


async def handle_echo(data: Any) -> Any:
    """The echo handler."""
    return data


async def on_session(session: session_asyncio.Session) -> None:
    """Serve `echo` on each new session."""
    session.on_request(echo, handle_echo)


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """Serve sessions (the codec is always the project's, orjson)."""
    async with await session_asyncio.serve(on_session, HOST, 0, config=CONFIG) as server:
        yield int(server.sockets[0].getsockname()[1])


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """One client session."""
    async with session_asyncio.connect(f"ws://{HOST}:{port}/", config=CONFIG) as session:

        async def request(data: Any) -> Any:
            return await session.request(echo, data)

        yield request
