"""Servers and hand-driven peers shared by the trio tests (the methods are `tests.methods`'s)."""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import trio

import session_trio
from session_core import (
    Config,
    Connection,
    Event,
    HandshakeAccepted,
    UpgradeRequested,
)
from tests.methods import (
    AddArgs,
    Problem,
    add,
    basic_on_session,
    crash,
    echo,
    fail,
    picky,
    serve_basics,
    sleep,
    tick,
    welcome,
)

# Re-exported: the trio tests import the shared methods from here.
__all__ = [
    "AddArgs",
    "OnSession",
    "Problem",
    "RawPeer",
    "add",
    "basic_on_session",
    "crash",
    "echo",
    "fail",
    "picky",
    "port_of",
    "raw_server",
    "running_server",
    "serve_basics",
    "sleep",
    "tick",
    "welcome",
]

E = TypeVar("E", bound=Event)

# -- servers ---------------------------------------------------------------------------

OnSession = Callable[[session_trio.Session], Awaitable[object]]


def port_of(listener: trio.abc.Listener[Any]) -> int:
    """The port a TCP listener (possibly TLS-wrapped) listens on."""
    if isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    assert isinstance(listener, trio.SocketListener)
    port = listener.socket.getsockname()[1]
    assert isinstance(port, int)
    return port


@contextlib.asynccontextmanager
async def running_server(
    on_session: OnSession = basic_on_session, *, scheme: str = "ws", **kwargs: Any
) -> AsyncIterator[str]:
    """Serve on a free loopback port; yields the server's URL and shuts it down at the end."""
    async with trio.open_nursery() as nursery:
        serve = functools.partial(session_trio.serve, on_session, "127.0.0.1", 0, **kwargs)
        listeners = await nursery.start(serve)
        yield f"{scheme}://127.0.0.1:{port_of(listeners[0])}/"
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def raw_server(handler: Callable[[trio.SocketStream], Awaitable[object]]) -> AsyncIterator[int]:
    """A plain TCP server on a free loopback port running `handler(stream)`; yields the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield port_of(listeners[0])
        nursery.cancel_scope.cancel()


# -- a peer driven by hand -------------------------------------------------------------


class RawPeer:
    """A `session_core.Connection` over a trio stream, driven step by step by the test.

    It has no tasks: it reads only inside `expect`, so a test decides exactly when it
    answers (pings included) and can stop answering, or vanish, at any point.
    """

    def __init__(self, stream: trio.abc.Stream, conn: Connection) -> None:
        self.stream = stream
        self.conn = conn
        self.events: deque[Event] = deque()

    @classmethod
    async def connect(
        cls, port: int, *, stream: trio.abc.Stream | None = None, config: Config | None = None
    ) -> RawPeer:
        """A client that completed its handshake."""
        if stream is None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        conn = Connection.client(f"127.0.0.1:{port}", "/", now=trio.current_time(), config=config)
        peer = cls(stream, conn)
        await peer.flush()
        await peer.expect(HandshakeAccepted)
        return peer

    @classmethod
    async def accept(cls, stream: trio.abc.Stream) -> RawPeer:
        """A server that accepted the client's upgrade."""
        server = Connection.server(now=trio.current_time())
        peer = cls(stream, server)
        await peer.expect(UpgradeRequested)
        server.accept(now=trio.current_time())
        await peer.flush()
        return peer

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def expect(self, kind: type[E]) -> E:
        """Read until an event of `kind` arrives (dropping others); fail at the end of stream."""
        while True:
            while self.events:
                event = self.events.popleft()
                if isinstance(event, kind):
                    return event
            data = await self.stream.receive_some(65536)
            if data:
                self.conn.receive_data(bytes(data), trio.current_time())
            else:
                self.conn.receive_eof()
            self.events.extend(self.conn.events())
            await self.flush()
            if not data and not self.events:
                raise EOFError(f"the stream ended before {kind.__name__}")

    async def read_to_end(self) -> bytes:
        """Everything the peer still sends, raw, until it closes the connection."""
        chunks = []
        while data := await self.stream.receive_some(65536):
            chunks.append(bytes(data))
        return b"".join(chunks)
