"""session-py over trio: the project's own adapter."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

import session_trio
from session_core import Config, Method

from ..common import HOST, MAX_MESSAGE, METHOD, Codec
from ..variants import Requester

echo: Method[Any, Any, str] = Method(METHOD, request=Any, response=Any, error=str)
CONFIG = Config(max_message_size=MAX_MESSAGE)


async def handle_echo(data: Any) -> Any:
    """The echo handler."""
    return data


async def on_session(session: session_trio.Session) -> None:
    """Serve `echo` on each new session."""
    session.on_request(echo, handle_echo)


@asynccontextmanager
async def serve(codec: Codec) -> AsyncIterator[int]:
    """Serve sessions until the block ends (the codec is always the project's, orjson)."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(session_trio.serve, config=CONFIG), on_session, HOST, 0
        )
        # mypy sees the listeners as `Listener[Any]`; serve() made SocketListeners.
        yield int(listeners[0].socket.getsockname()[1])
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def connect(port: int, codec: Codec) -> AsyncIterator[Requester]:
    """One client session."""
    async with session_trio.connect(f"ws://{HOST}:{port}/", config=CONFIG) as session:

        async def request(data: Any) -> Any:
            return await session.request(echo, data)

        yield request
