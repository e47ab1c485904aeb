"""Servers and raw peers shared by the asyncio tests (methods: `tests.methods`; frames:
`tests.wire`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import session_asyncio
from tests import wire
from tests.methods import AddArgs, add, crash, echo, fail, serve_basics, sleep, tick, welcome

# Re-exported: the asyncio tests import the shared methods and wire helpers from here.
__all__ = [
    "UPGRADE",
    "AddArgs",
    "OnSession",
    "RawHandler",
    "accept_upgrade",
    "add",
    "crash",
    "echo",
    "fail",
    "masked_frame",
    "raw_server",
    "read_frame",
    "running",
    "serve_basics",
    "sleep",
    "text_frame",
    "tick",
    "url_of",
    "welcome",
]

# -- servers ---------------------------------------------------------------------------

OnSession = Callable[[session_asyncio.Session], Awaitable[None]]


def url_of(server: session_asyncio.Server, scheme: str = "ws", path: str = "/") -> str:
    """The URL of a server listening on 127.0.0.1."""
    port = server.sockets[0].getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}{path}"


@contextlib.asynccontextmanager
async def running(
    on_session: OnSession | None = None, **kwargs: Any
) -> AsyncIterator[session_asyncio.Server]:
    """A session_asyncio server on a free port of 127.0.0.1 that serves the basic methods."""

    async def default(session: session_asyncio.Session) -> None:
        serve_basics(session)

    async with await session_asyncio.serve(on_session or default, "127.0.0.1", 0, **kwargs) as server:
        yield server


# -- raw peers -------------------------------------------------------------------------

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: A client's upgrade request, as one would write it by hand (RFC 6455's example key).
UPGRADE = wire.upgrade_request("x", key="dGhlIHNhbXBsZSBub25jZQ==")


async def accept_upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, then: bytes = b""
) -> bytes:
    """Read an upgrade request and answer it with a 101, by hand, followed by `then` in the
    same write. Returns the request."""
    head = await reader.readuntil(b"\r\n\r\n")
    writer.write(wire.accept_response(head) + then)
    await writer.drain()
    return head


def text_frame(text: str) -> bytes:
    """An unmasked text frame, as a server sends it."""
    return wire.text_frame(text)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client sends it (mask 0 keeps the payload readable on the wire)."""
    return wire.client_frame(opcode, payload, mask=bytes(4))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one frame (masked or not), and no byte past it: its opcode and unmasked payload."""
    data = b""
    while len(data) < (needed := wire.bytes_needed(data)):
        data += await reader.readexactly(needed - len(data))
    (frame,) = wire.parse_frames(data)
    return frame.opcode, frame.payload


@contextlib.asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[str]:
    """A plain TCP server on 127.0.0.1 running `handler` per connection; yields its URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        # asyncio.start_server logs a handler task that ends cancelled as an error.
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            try:
                await handler(reader, writer)
            finally:
                writer.close()
                await writer.wait_closed()
        tasks.discard(task)

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await server.wait_closed()
