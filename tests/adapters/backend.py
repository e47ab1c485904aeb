"""One face over both adapters and every loop they run on: trio, asyncio and uvloop.

A test body written against `Backend` runs on each (`BACKENDS`, or `ADAPTERS` for one loop
per adapter): the adapters' public API is the same (`connect(url, ...)` giving a `Session`
with `request`, `notify`, `on_request`, `on_notification`, `close`, `close_code`), and
`Backend` covers where they differ: how a server is started and stopped, how a loop is run,
and the loop's own primitives (sleep, events, timeouts, cancellation, threads).

`Backend.run` runs a test body on a fresh loop under a deadline, and fails it if it leaves a
task running or (on asyncio) the loop reports an error.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import trio
import uvloop

import session_asyncio
import session_trio
from tests.methods import AnySession

T = TypeVar("T")


class EventLike(Protocol):
    """`trio.Event` and `asyncio.Event` alike."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> object: ...


OnSession = Callable[[AnySession], Awaitable[None]]

#: Real seconds a test body may take by default (the machine may be loaded).
DEFAULT_TIMEOUT = 30.0


def fd_count() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


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
    "The loop: trio, asyncio or uvloop."
    adapter: str
    "The adapter's package (and logger) name: session_trio or session_asyncio."

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
    def event(self) -> EventLike:
        """A new event of the loop."""

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
    adapter = "session_trio"

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

    def event(self) -> EventLike:
        return trio.Event()

    def task_count(self) -> int:
        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(count(child) for nursery in task.child_nurseries for child in nursery.child_tasks)

        return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]

    def is_cancellation(self, exc: BaseException) -> bool:
        return isinstance(exc, trio.Cancelled)


class AsyncioBackend(Backend):
    adapter = "session_asyncio"

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

    def event(self) -> EventLike:
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
