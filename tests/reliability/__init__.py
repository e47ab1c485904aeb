"""Reliability tests: hostile peers, limits under attack, faults, load and security.

This package's tests run each scenario on both adapters through `Backend` (trio, asyncio,
uvloop), so that one test body covers both; attackers are plain blocking sockets run in a
thread (`RawPeer`, `RawServer`), so that they behave the same against either adapter and
can do what no well-behaved peer does (stop reading, trickle a handshake, drop the TCP
connection mid-frame). The tests are plain functions that call `Backend.run`: they need no
conftest hook, and each runs under a deadline.

Both adapters' `Session` classes have the same API, so the tests type a session as `Any`.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import functools
import gc
import hashlib
import os
import resource
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import trio
import uvloop

import session_asyncio
import session_trio

T = TypeVar("T")

AnySession = Any
"A `session_trio.Session` or a `session_asyncio.Session`: the same API."
OnSession = Callable[[AnySession], Awaitable[None]]

#: Real seconds a test body may take by default (the machine may be loaded).
DEFAULT_TIMEOUT = 30.0

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- accounting ------------------------------------------------------------------------


def fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def rss_kib(pid: int | str = "self") -> int:
    """The resident set size of a process, in KiB."""
    return _status_field(pid, "VmRSS")


def _status_field(pid: int | str, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise LookupError(name)  # pragma: no cover - every Linux process has them


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft limit on open files to `wanted` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# -- backends --------------------------------------------------------------------------


class Server:
    """A running server of either adapter, on 127.0.0.1."""

    def __init__(self, port: int, scheme: str, stop: Callable[[], Awaitable[None]]) -> None:
        self.port = port
        self.url = f"{scheme}://127.0.0.1:{port}/"
        self._stop = stop

    async def shutdown(self) -> None:
        """Shut the server down (its sessions close with 1001) and wait until it has."""
        await self._stop()


class Backend(abc.ABC):
    """An adapter and its event loop, behind one small interface the tests share."""

    name: str

    def __repr__(self) -> str:
        return self.name

    @abc.abstractmethod
    def run(self, main: Callable[[], Awaitable[None]], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Run `main()` on a fresh loop; fail if it takes longer than `timeout` seconds or
        leaves tasks behind (or, on asyncio, the loop reports an error)."""

    @abc.abstractmethod
    def serve(self, on_session: OnSession, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[Server]:
        """Serve on a free port of 127.0.0.1 (`kwargs` go to the adapter's `serve`)."""

    @abc.abstractmethod
    def connect(self, url: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[AnySession]:
        """The adapter's `connect(url, **kwargs)`."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None: ...

    @abc.abstractmethod
    async def to_thread(self, function: Callable[[], T]) -> T:
        """Run a blocking function in a worker thread."""

    @abc.abstractmethod
    async def gather(self, *functions: Callable[[], Awaitable[T]]) -> list[T | Exception]:
        """Run the functions concurrently; each one's result or exception, in order."""

    @abc.abstractmethod
    async def within(self, seconds: float, function: Callable[[], Awaitable[T]]) -> T:
        """`await function()`, raising the builtin `TimeoutError` after `seconds`."""

    @abc.abstractmethod
    async def cancel_after(self, seconds: float, function: Callable[[], Awaitable[object]]) -> bool:
        """Run `function()` and cancel it after `seconds`; True if it was cancelled."""

    @abc.abstractmethod
    def event(self) -> Any:
        """A new event (`set()`, `is_set()`, `await wait()`)."""

    @abc.abstractmethod
    def task_count(self) -> int:
        """How many tasks are alive in the running loop."""

    @abc.abstractmethod
    def is_cancellation(self, exc: BaseException) -> bool:
        """True if `exc` is how this backend cancels a task."""

    async def eventually(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll `condition` until true or `timeout`; its last value."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            await self.sleep(0.02)
        return True

    async def check_no_leaks(self, fds: int, tasks: int, *, timeout: float = 10.0) -> None:
        """Fail unless the open file descriptors and live tasks come back to `fds` and
        `tasks` (closing is asynchronous on asyncio: give it a little time)."""
        await self.eventually(lambda: fd_count() <= fds and self.task_count() <= tasks, timeout)
        assert fd_count() <= fds, f"{fd_count() - fds} file descriptors leaked"
        assert self.task_count() <= tasks, f"{self.task_count() - tasks} tasks leaked"


class TrioBackend(Backend):
    name = "trio"

    def run(self, main: Callable[[], Awaitable[None]], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        async def guarded() -> None:
            tasks = self.task_count()
            with trio.fail_after(timeout):
                await main()
            assert self.task_count() == tasks, "tasks left running"

        trio.run(guarded)

    @contextlib.asynccontextmanager
    async def serve(self, on_session: OnSession, **kwargs: Any) -> AsyncIterator[Server]:
        scheme = "wss" if kwargs.get("ssl_context") is not None else "ws"
        scope = trio.CancelScope()
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[list[Any]]) -> None:
            try:
                with scope:
                    await session_trio.serve(on_session, "127.0.0.1", 0, task_status=task_status, **kwargs)
            finally:
                stopped.set()

        async def stop() -> None:
            scope.cancel()
            await stopped.wait()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(run)
            listener = listeners[0]
            if isinstance(listener, trio.SSLListener):
                listener = listener.transport_listener
            yield Server(listener.socket.getsockname()[1], scheme, stop)
            await stop()

    def connect(self, url: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[AnySession]:
        return session_trio.connect(url, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def to_thread(self, function: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(function)

    async def gather(self, *functions: Callable[[], Awaitable[T]]) -> list[T | Exception]:
        results: list[T | Exception] = [RuntimeError("not run")] * len(functions)

        async def one(index: int, function: Callable[[], Awaitable[T]]) -> None:
            try:
                results[index] = await function()
            except Exception as exc:
                results[index] = exc

        async with trio.open_nursery() as nursery:
            for index, function in enumerate(functions):
                nursery.start_soon(one, index, function)
        return results

    async def within(self, seconds: float, function: Callable[[], Awaitable[T]]) -> T:
        try:
            with trio.fail_after(seconds):
                return await function()
        except trio.TooSlowError:
            raise TimeoutError(f"not done within {seconds} s") from None

    async def cancel_after(self, seconds: float, function: Callable[[], Awaitable[object]]) -> bool:
        with trio.move_on_after(seconds) as scope:
            await function()
        return scope.cancelled_caught

    def event(self) -> Any:
        return trio.Event()

    def task_count(self) -> int:
        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

        return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, trio.Cancelled)


class AsyncioBackend(Backend):
    def __init__(self, name: str, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.name = name
        self._loop_factory = loop_factory

    def run(self, main: Callable[[], Awaitable[None]], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        errors: list[dict[str, Any]] = []

        def on_error(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            # A client dropping its TLS handshake (certificate verification) is reported by
            # asyncio on the server side; that is not an error of ours.
            if context.get("message") != "Error on transport creation for incoming connection":
                errors.append(context)

        async def guarded() -> None:
            tasks = self.task_count()
            async with asyncio.timeout(timeout):
                await main()
            assert await self.eventually(lambda: self.task_count() <= tasks, 5.0), "tasks left running"

        with asyncio.Runner(loop_factory=self._loop_factory) as runner:
            runner.get_loop().set_exception_handler(on_error)
            runner.run(guarded())
            gc.collect()  # futures dropped with an unread exception report it now
            runner.run(asyncio.sleep(0))
        assert not errors, f"the event loop reported errors: {errors}"

    @contextlib.asynccontextmanager
    async def serve(self, on_session: OnSession, **kwargs: Any) -> AsyncIterator[Server]:
        scheme = "wss" if kwargs.get("ssl_context") is not None else "ws"
        server = await session_asyncio.serve(on_session, "127.0.0.1", 0, **kwargs)

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        try:
            yield Server(server.sockets[0].getsockname()[1], scheme, stop)
        finally:
            await stop()

    def connect(self, url: str, **kwargs: Any) -> contextlib.AbstractAsyncContextManager[AnySession]:
        return session_asyncio.connect(url, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def to_thread(self, function: Callable[[], T]) -> T:
        return await asyncio.to_thread(function)

    async def gather(self, *functions: Callable[[], Awaitable[T]]) -> list[T | Exception]:
        async def one(function: Callable[[], Awaitable[T]]) -> T | Exception:
            try:
                return await function()
            except Exception as exc:
                return exc

        return list(await asyncio.gather(*(one(function) for function in functions)))

    async def within(self, seconds: float, function: Callable[[], Awaitable[T]]) -> T:
        async with asyncio.timeout(seconds):
            return await function()

    async def cancel_after(self, seconds: float, function: Callable[[], Awaitable[object]]) -> bool:
        async def run() -> None:
            await function()

        task = asyncio.ensure_future(run())
        done, _ = await asyncio.wait((task,), timeout=seconds)
        if done:
            task.result()
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    def event(self) -> Any:
        return asyncio.Event()

    def task_count(self) -> int:
        return len(asyncio.all_tasks())

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncio.CancelledError)


TRIO = TrioBackend()
ASYNCIO = AsyncioBackend("asyncio", asyncio.new_event_loop)
UVLOOP = AsyncioBackend("uvloop", uvloop.new_event_loop)
BACKENDS = [TRIO, ASYNCIO, UVLOOP]
"Every backend: for tests where the transport layer matters (buffers, flow control)."
ADAPTERS = [TRIO, ASYNCIO]
"One backend per adapter: for tests about behaviour above the transport."


# -- raw frames ------------------------------------------------------------------------


def frame_header(opcode: int, length: int, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """The header of an RFC 6455 frame, with its masking key when `mask` is given."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    return head + (mask or b"")


def apply_mask(mask: bytes, payload: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `mask` (masking and unmasking alike)."""
    if not payload:
        return b""
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        len(payload), "little"
    )


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A frame as a client must send it: masked with a fresh key."""
    mask = os.urandom(4)
    return frame_header(opcode, len(payload), fin=fin, mask=mask) + apply_mask(mask, payload)


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A frame as a server sends it: unmasked."""
    return frame_header(opcode, len(payload), fin=fin) + payload


def upgrade_request(port: int, path: str = "/", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def accept_response(request: bytes) -> bytes:
    """The 101 that answers an upgrade request."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    token = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + token + b"\r\n\r\n"
    )


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
        maker = client_frame if self.client else server_frame
        self.sock.sendall(maker(opcode, payload, fin=fin))

    def recv_frame(self) -> tuple[int, bytes] | None:
        """The next whole frame `(opcode, unmasked payload)`, or `None` at the end of the stream
        (or when the peer resets the connection)."""
        while True:
            parsed = _parse_frame(self.buffer)
            if parsed is not None:
                opcode, payload, used = parsed
                self.buffer = self.buffer[used:]
                return opcode, payload
            try:
                data = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.buffer += data

    def frames_until_close(self) -> list[tuple[int, bytes]]:
        """Every frame up to the end of the stream."""
        frames = []
        while (item := self.recv_frame()) is not None:
            frames.append(item)
        return frames

    def reset(self) -> None:
        """Drop the connection with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def _parse_frame(data: bytes) -> tuple[int, bytes, int] | None:
    if len(data) < 2:
        return None
    length, pos = data[1] & 0x7F, 2
    if length == 126:
        if len(data) < 4:
            return None
        length, pos = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, pos = int.from_bytes(data[2:10], "big"), 10
    mask = b""
    if data[1] & 0x80:
        mask, pos = data[pos : pos + 4], pos + 4
    if len(data) < pos + length:
        return None
    payload = data[pos : pos + length]
    return data[0] & 0x0F, apply_mask(mask, payload) if mask else payload, pos + length


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload (`None` when it has none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


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
    peer.sock.sendall(accept_response(request))
    return request


def partial(function: Callable[..., T], *args: Any, **kwargs: Any) -> Callable[[], T]:
    """`functools.partial`, typed as a no-argument callable."""
    return functools.partial(function, *args, **kwargs)
