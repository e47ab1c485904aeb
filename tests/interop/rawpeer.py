"""A WebSocket peer written by hand on a blocking socket, behaving as session-rs 0.1.3 does.

What it copies from session-rs (docs/protocol.md, "How session-rs 0.1.3 behaves on the wire"):
its client's upgrade request, header for header; its server's 101, header for header;
every frame written in two writes, the header and then the payload, a little apart; close
frames without a status code; an answer to every close frame it receives; empty pongs to
any ping; and a server that never closes the TCP connection after the close handshake.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from tests import wire
from tests.wire import CLOSE, PING, PONG, TEXT, Frame, close_payload

# Re-exported: the interop tests and tests/test_cli.py import the wire names from here.
__all__ = [
    "CLOSE",
    "PING",
    "PONG",
    "SESSION_RS_ACCEPT",
    "SESSION_RS_KEY",
    "SPLIT_DELAY",
    "TEXT",
    "TRANSCRIPT",
    "WELCOME",
    "EndOfStream",
    "FakeServer",
    "Frame",
    "Head",
    "RawPeer",
    "close_payload",
    "masked",
    "raw_client",
    "session_rs_101",
    "session_rs_upgrade",
]

#: Seconds between a frame's header and its payload (session-rs writes them apart, and
#: without TCP_NODELAY the payload trails by ~44 ms; shorter here to keep the tests fast).
SPLIT_DELAY = 0.01
#: The key of session-rs's captured upgrade request, and the accept it implies.
SESSION_RS_KEY = wire.SESSION_RS_KEY.decode()
SESSION_RS_ACCEPT = wire.SESSION_RS_ACCEPT_TOKEN.decode()

#: The exchange captured in docs/protocol.md: the server's welcome, then the client's three
#: requests and the server's answers, byte for byte.
WELCOME = '{"type":"notification","method":"welcome","data":"hi"}'
TRANSCRIPT = [
    (
        '{"type":"request","id":1,"method":"echo","data":{"x":[1,2,3]}}',
        '{"type":"response","id":1,"result":{"x":[1,2,3]}}',
    ),
    (
        '{"type":"request","id":2,"method":"add","data":{"a":2,"b":3}}',
        '{"type":"response","id":2,"result":5}',
    ),
    (
        '{"type":"request","id":3,"method":"fail","data":null}',
        '{"type":"errorresponse","id":3,"error":"boom"}',
    ),
]


def session_rs_upgrade(port: int, path: str = "/") -> bytes:
    """The upgrade request of session-rs's client: these headers, in this order, no others."""
    return wire.upgrade_request(f"127.0.0.1:{port}", path)


def session_rs_101(key: str) -> bytes:
    """The 101 of session-rs's server answering `key`: these headers, in this order."""
    return wire.switching_protocols(key)


@attrs.frozen
class Head:
    """An HTTP head: its first line and its headers (names in lower case)."""

    start: str
    headers: dict[str, str]

    @classmethod
    def parse(cls, raw: bytes) -> Head:
        lines = raw.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                assert name.lower() not in headers, f"header {name} twice"
                headers[name.lower()] = value.strip()
        return cls(lines[0], headers)


class EndOfStream(Exception):
    """The other side closed the TCP connection."""


class RawPeer:
    """One blocking TCP connection, spoken to frame by frame.

    `client=True` masks what it sends and expects unmasked frames; `client=False` the
    opposite. Every read is bounded by `timeout` seconds.
    """

    def __init__(self, sock: socket.socket, *, client: bool, timeout: float = 5.0) -> None:
        self.sock = sock
        self.client = client
        self.buffer = bytearray()
        sock.settimeout(timeout)

    # -- writing, as session-rs writes --------------------------------------------------

    def write_frame(self, opcode: int, payload: bytes = b"") -> None:
        """One frame, in two writes: the header (with the mask), then the payload."""
        mask = wire.new_mask() if self.client else None
        self.sock.sendall(wire.frame_header(opcode, len(payload), mask=mask))
        if payload:
            time.sleep(SPLIT_DELAY)
            self.sock.sendall(wire.apply_mask(mask, payload) if mask is not None else payload)

    def send_text(self, text: str) -> None:
        self.write_frame(TEXT, text.encode())

    # -- reading ------------------------------------------------------------------------

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EndOfStream(f"the connection ended; {len(self.buffer)} bytes left unread")
        self.buffer += data

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        taken = bytes(self.buffer[:n])
        del self.buffer[:n]
        return taken

    def read_head(self) -> Head:
        """An HTTP head; what follows it stays in the buffer."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        return Head.parse(self._take(end + 4))

    def read_frame(self) -> Frame:
        """The next frame, read exactly: what follows it stays in the buffer."""
        while (parsed := wire.parse_frame(self.buffer)) is None:
            self._fill()
        frame, used = parsed
        del self.buffer[:used]
        return frame

    def read_text(self) -> str:
        """One protocol message: a single unfragmented text frame, masked only by a client."""
        frame = self.read_frame()
        assert frame.opcode == TEXT, frame
        assert frame.fin, f"a fragmented message: {frame}"
        assert frame.masked is not self.client, f"masking wrong for the sender's role: {frame}"
        return frame.payload.decode()

    def read_until(self, opcode: int, on_ping: Callable[[Frame], None] | None = None) -> Frame:
        """Skip frames until one with `opcode`; pings go to `on_ping` (else are ignored)."""
        while True:
            frame = self.read_frame()
            if frame.opcode == opcode:
                return frame
            if frame.opcode == PING and on_ping is not None:
                on_ping(frame)

    def expect_eof(self, within: float) -> float:
        """Wait for the other side to close the connection, with nothing more sent.

        Returns the seconds it took; fails after `within` seconds or on any byte.
        """
        start = time.monotonic()
        self.sock.settimeout(within)
        try:
            while data := self.sock.recv(65536):
                self.buffer += data
                raise AssertionError(f"bytes after the end: {bytes(self.buffer)!r}")
        except ConnectionResetError:
            pass  # an end too (our last write crossed the peer's close)
        except TimeoutError:
            raise AssertionError(f"the connection was still open after {within} s") from None
        return time.monotonic() - start


def masked(opcode: int, payload: bytes = b"") -> bytes:
    """A whole client frame, in one piece: to send several in one write."""
    return wire.client_frame(opcode, payload)


@contextlib.contextmanager
def raw_client(port: int, timeout: float = 5.0) -> Iterator[RawPeer]:
    """A TCP connection to our server, as a raw client; closed at the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        yield RawPeer(sock, client=True, timeout=timeout)


class FakeServer:
    """A TCP server in a thread that runs `script(peer)` on one connection.

    `port` is where it listens. Leaving the context joins the thread and raises whatever
    the script raised, so its assertions fail the test.
    """

    def __init__(self, script: Callable[[RawPeer], Any], *, timeout: float = 10.0) -> None:
        self.script = script
        self.timeout = timeout
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(timeout)
        self.port: int = self.listener.getsockname()[1]
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fake-session-rs", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
            with sock:
                self.result = self.script(RawPeer(sock, client=False, timeout=self.timeout))
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.thread.join(self.timeout + 5)
        self.listener.close()
        assert not self.thread.is_alive(), "the fake server's script did not end"
        if self.error is None:
            return
        if isinstance(exc_info[1], BaseException):  # the test failed too: say both
            exc_info[1].add_note(f"and the fake server's script failed: {self.error!r}")
            return
        raise AssertionError(f"the fake server's script failed: {self.error!r}") from self.error
