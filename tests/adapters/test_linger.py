"""A close code reaches a peer that is still sending: the lingering close, on every backend.

A server that refuses a message (1009, 1007) or shuts down (1001) while the peer is still
streaming a huge message must not close its socket with the peer's bytes unread: the kernel
would answer with a reset, destroying the close frame in flight. It reads on, discarding,
until the peer's close frame or the end of the stream (or the close timeout), then closes.
Each case runs many times: a reset is a race, lost only now and then.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import websockets.exceptions
import websockets.sync.client

from session_core import Config
from tests import wire
from tests.methods import AnySession

from .backend import Backend
from .peers import RawPeer

REPEATS = 10
HUGE = 20 << 20
"The message a peer streams: 20 MiB, against the default limit of 1 MiB."


@functools.cache
def _huge_frame() -> bytes:
    # Built once: masking 20 MiB takes a moment.
    return wire.client_frame(wire.TEXT, b"x" * HUGE)


async def _idle(session: AnySession) -> None:
    pass


def _close_code_after_sending(
    port: int, data: bytes, *, started: threading.Event | None = None
) -> int | None:
    """A raw client streams `data` with `sendall`, then reads to the server's close frame,
    answers it and waits for the end; the close code it saw (`None`: none, or a reset)."""
    peer = RawPeer.connect(port)
    try:
        assert b" 101 " in peer.handshake(port)
        try:
            if started is not None:
                peer.sock.sendall(data[: 1 << 20])
                started.set()
                data = data[1 << 20 :]
            peer.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return None
        code: int | None = None
        while (frame := peer.recv_frame()) is not None:
            if frame[0] == wire.CLOSE:
                code = wire.parse_close(frame[1])[0]
                peer.send_frame(wire.CLOSE, frame[1])
        return code
    finally:
        peer.close()


async def test_a_peer_streaming_a_huge_message_gets_1009_every_time(backend: Backend) -> None:
    frame = _huge_frame()
    async with backend.serve(_idle) as server:
        codes = [
            await backend.to_thread(lambda: _close_code_after_sending(server.port, frame))
            for _ in range(REPEATS)
        ]
    assert codes == [1009] * REPEATS


def _websockets_close_code(url: str) -> int | None:
    # As issue 12 measured it: the `websockets` sync client sends 20 MiB, then reads.
    with websockets.sync.client.connect(url, max_size=None, close_timeout=10, open_timeout=10) as ws:
        try:
            ws.send("y" * HUGE)
            ws.recv(timeout=10)
        except websockets.exceptions.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None
    return None


async def test_the_websockets_client_gets_1009_every_time(backend: Backend) -> None:
    async with backend.serve(_idle) as server:
        codes = [await backend.to_thread(lambda: _websockets_close_code(server.url)) for _ in range(REPEATS)]
    assert codes == [1009] * REPEATS


async def test_invalid_utf8_under_load_gets_1007_every_time(backend: Backend) -> None:
    # Invalid UTF-8 first, then the peer goes on streaming 20 MiB behind it.
    data = wire.client_frame(wire.TEXT, b"\xff\xfe") + _huge_frame()
    async with backend.serve(_idle, config=Config(max_message_size=None)) as server:
        codes = [
            await backend.to_thread(lambda: _close_code_after_sending(server.port, data))
            for _ in range(REPEATS)
        ]
    assert codes == [1007] * REPEATS


async def test_a_server_shutdown_reaches_a_peer_still_streaming_with_1001(backend: Backend) -> None:
    frame = _huge_frame()
    config = Config(max_message_size=None)
    for _ in range(REPEATS):
        started = threading.Event()
        async with backend.serve(_idle, config=config) as server:
            port = server.port

            async def peer(port: int = port, started: threading.Event = started) -> Any:
                return await backend.to_thread(
                    lambda: _close_code_after_sending(port, frame, started=started)
                )

            async def shut_down(server: Any = server, started: threading.Event = started) -> None:
                assert await backend.to_thread(lambda: started.wait(10))
                await server.shutdown()

            code, _ = await backend.gather(peer, shut_down)
        assert code == 1001


async def test_a_linger_is_bounded_by_the_close_timeout(backend: Backend) -> None:
    # The peer sends a message too big, then stays silent: the server gives up after the
    # close timeout, not later.
    config = Config(max_message_size=1000, close_timeout=0.3)
    seen: list[tuple[int, int | None]] = []

    def silent_peer(port: int) -> None:
        peer = RawPeer.connect(port)
        try:
            assert b" 101 " in peer.handshake(port)
            peer.sock.sendall(wire.client_frame(wire.TEXT, b"z" * 5000)[:3000])
            while (frame := peer.recv_frame()) is not None:  # until the server's TCP close
                seen.append((frame[0], wire.parse_close(frame[1])[0] if frame[0] == wire.CLOSE else None))
        finally:
            peer.close()

    async with backend.serve(_idle, config=config) as server:
        await backend.within(5, lambda: backend.to_thread(lambda: silent_peer(server.port)))
    assert seen == [(wire.CLOSE, 1009)]
