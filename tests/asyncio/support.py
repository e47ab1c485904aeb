"""Methods, servers and raw peers shared by the asyncio tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs

import session_asyncio
from session_core import Method, MethodError

# -- methods ---------------------------------------------------------------------------


@attrs.frozen
class AddArgs:
    a: int
    b: int


add = Method("add", request=AddArgs, response=int, error=str)
# Annotated: mypy cannot infer through the `Any` that `Method(..., request=Any, ...)` gives.
echo: Method[Any, Any, str] = Method("echo", request=Any, response=Any, error=str)
fail = Method("fail", request=None, response=None, error=str)
crash = Method("crash", request=None, response=None, error=str)
sleep = Method("sleep", request=float, response=float, error=str)
tick = Method("tick", request=int, response=None, error=None)
welcome = Method("welcome", request=str, response=None, error=None)


def serve_basics(session: session_asyncio.Session) -> None:
    """Register `add`, `echo`, `fail`, `crash` and `sleep` on `session`."""

    @session.on_request(add)
    async def _add(args: AddArgs) -> int:
        if args.a < 0:
            raise MethodError("negative")
        return args.a + args.b

    @session.on_request(echo)
    async def _echo(data: Any) -> Any:
        return data

    @session.on_request(fail)
    async def _fail(_: None) -> None:
        raise MethodError("boom")

    @session.on_request(crash)
    async def _crash(_: None) -> None:
        raise ValueError("secret detail")

    @session.on_request(sleep)
    async def _sleep(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


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

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def accept_upgrade(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, then: bytes = b""
) -> bytes:
    """Read an upgrade request and answer it with a 101, by hand, followed by `then` in the
    same write. Returns the request."""
    head = await reader.readuntil(b"\r\n\r\n")
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + then
    )
    await writer.drain()
    return head


def text_frame(text: str) -> bytes:
    """An unmasked text frame, as a server sends it."""
    payload = text.encode()
    if len(payload) < 126:
        return struct.pack("!BB", 0x81, len(payload)) + payload
    return struct.pack("!BBH", 0x81, 126, len(payload)) + payload


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame (payload under 64 KiB; mask 0 keeps it readable), as a client sends it."""
    if len(payload) < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload))
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, len(payload))
    return head + b"\x00\x00\x00\x00" + payload


#: A client's upgrade request, as one would write it by hand.
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one frame (masked or not, payload under 64 KiB): its opcode and payload."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    payload = await reader.readexactly(length)
    return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


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
