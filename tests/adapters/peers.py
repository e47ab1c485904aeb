"""Peers written by hand on blocking sockets, for tests against either adapter.

A `RawPeer` speaks just enough WebSocket (with `tests.wire`) to misbehave precisely: stop
reading, trickle a handshake, drop the TCP connection mid-frame. It blocks, so it runs in
a thread: `RawServer` runs one behaviour per connection in threads of its own, and a test
drives a client `RawPeer` through `Backend.to_thread`. Being outside any event loop, it
behaves the same against trio, asyncio and uvloop.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from tests import wire


def upgrade_request(port: int, path: str = "/", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A client's upgrade request to 127.0.0.1:`port`, with a fresh key."""
    return wire.upgrade_request(f"127.0.0.1:{port}", path, key=wire.new_key(), headers=headers)


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload (`None` when it has none)."""
    return wire.parse_close(payload)[0]


class RawPeer:
    """One end of a TCP connection, driven by hand with blocking calls (run it in a thread).

    It speaks just enough WebSocket to misbehave precisely. Every call is bounded by the
    socket's timeout, so that a test never hangs on it.
    """

    def __init__(self, sock: socket.socket, *, client: bool) -> None:
        self.sock = sock
        self.client = client
        self.buffer = b""

    @classmethod
    def connect(cls, port: int, *, timeout: float = 15.0) -> RawPeer:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        return cls(sock, client=True)

    def handshake(self, port: int, path: str = "/", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        """Client: send an upgrade request and read the response's head, which is returned."""
        self.sock.sendall(upgrade_request(port, path, headers))
        return self.read_head()

    def read_head(self) -> bytes:
        """Read up to the end of an HTTP head (keeping what follows); the head."""
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"the stream ended inside the HTTP head: {self.buffer[:200]!r}")
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n"

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        maker = wire.client_frame if self.client else wire.server_frame
        self.sock.sendall(maker(opcode, payload, fin=fin))

    def recv_frame(self) -> tuple[int, bytes] | None:
        """The next whole frame `(opcode, unmasked payload)`, or `None` at the end of the stream
        (or when the peer resets the connection)."""
        while True:
            parsed = wire.parse_frame(self.buffer)
            if parsed is not None:
                frame, used = parsed
                self.buffer = self.buffer[used:]
                return frame.opcode, frame.payload
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buffer += data

    def frames_until_close(self, *, answer_close: bool = False) -> list[tuple[int, bytes]]:
        """Every frame up to the end of the stream; a close frame is echoed back when
        `answer_close`, as a well-behaved peer completes the close handshake."""
        frames = []
        while (item := self.recv_frame()) is not None:
            frames.append(item)
            if answer_close and item[0] == wire.CLOSE:
                with contextlib.suppress(OSError):
                    self.send_frame(wire.CLOSE, item[1])
        return frames

    def reset(self) -> None:
        """Drop the connection with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class RawServer:
    """A TCP server on 127.0.0.1 that runs `behaviour(peer)` for each connection, in a thread.

    Use it as a context manager; `port` tells where it listens and `errors` collects what
    the behaviours raised (a test asserts it is empty).
    """

    def __init__(self, behaviour: Callable[[RawPeer], None], *, timeout: float = 15.0) -> None:
        self._behaviour = behaviour
        self._timeout = timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._acceptor.join()
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(self._timeout)
            thread = threading.Thread(target=self._serve, args=(RawPeer(sock, client=False),), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, peer: RawPeer) -> None:
        try:
            self._behaviour(peer)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                peer.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


def accept_upgrade(peer: RawPeer) -> bytes:
    """Server side of a raw peer: read the upgrade request, answer 101; the request."""
    request = peer.read_head()
    peer.sock.sendall(wire.accept_response(request))
    return request
