"""What the interop tests share: the scenario methods, our servers in threads, loop kits.

Our own side of a test runs either in the test's thread (a client, under `Kit.run`) or in a
thread of its own with its own event loop (`serving(...)`), so that a peer written with a
different loop, a blocking socket, or an outside program can face it from the other side.

The scenario server (`scenario_session`) serves `echo`, `add`, `fail`, `hang` (answered
never), `close_me` (closes the session with the code and reason asked) and `report`
(recorded, answered "thanks"); it notifies `welcome` ("hi") to each client, records the
notification `note`, and on the notification `ask` (data: a name) calls the client's
`confirm` and `nope` methods and notifies `confirmed` with what came back. It records what
happens (`Record`), so the test can check it from its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import attrs
import pytest
import trio

import session_asyncio
import session_trio
from session_core import Config, MethodError, ProtocolErrorResponse, RemoteError
from tests.methods import (
    NOT_FOUND_NOPE,
    AddArgs,
    AnySession,
    CloseArgs,
    add,
    ask,
    close_me,
    confirm,
    confirmed,
    echo,
    fail,
    hang,
    nope,
    note,
    report,
    welcome,
)

T = TypeVar("T")

ADAPTERS = ("trio", "asyncio")
#: Seconds a server may take to shut down (it closes its sessions on loopback: ms).
SHUTDOWN_TIMEOUT = 2.0

# The scenario's methods are `tests.methods`'s; re-exported for the interop tests.
__all__ = [
    "ADAPTERS",
    "KITS",
    "NOT_FOUND_NOPE",
    "AddArgs",
    "CloseArgs",
    "Record",
    "add",
    "ask",
    "assert_quiet",
    "asyncio_thread",
    "close_me",
    "confirm",
    "confirmed",
    "echo",
    "fail",
    "hang",
    "nope",
    "note",
    "report",
    "run_asyncio",
    "run_trio",
    "scenario_session",
    "serve_confirm",
    "serving",
    "trio_thread",
    "welcome",
]

# -- a record of what a server saw, readable from another thread ------------------------


class Record:
    """Entries `(kind, *values)` appended by a server thread, awaited by the test's thread."""

    def __init__(self) -> None:
        self._entries: list[tuple[Any, ...]] = []
        self._changed = threading.Condition()

    def add(self, kind: str, *values: Any) -> None:
        with self._changed:
            self._entries.append((kind, *values))
            self._changed.notify_all()

    def all(self, kind: str) -> list[tuple[Any, ...]]:
        with self._changed:
            return [entry[1:] for entry in self._entries if entry[0] == kind]

    def wait(self, kind: str, timeout: float = 5.0, count: int = 1) -> list[tuple[Any, ...]]:
        """The values of the first `count` entries of `kind`; fails after `timeout` seconds.

        Blocks the calling thread: call it when no event loop runs in it.
        """
        with self._changed:
            found = self._changed.wait_for(lambda: len(self.all(kind)) >= count, timeout)
            assert found, f"no {kind!r} entry after {timeout} s; have {self._entries}"
            return self.all(kind)[:count]


async def outcome(call: Awaitable[Any]) -> dict[str, Any]:
    """What a request gave, as JSON: `result`, the method's `error`, or a protocol error."""
    try:
        return {"result": await call}
    except ProtocolErrorResponse as exc:
        return {"code": exc.code, "message": exc.message}
    except RemoteError as exc:
        return {"error": exc.error}


async def scenario_session(session: AnySession, record: Record) -> None:
    """The server side of every scenario (either adapter): serve, greet, record the end."""

    @session.on_request(echo)
    async def _echo(data: Any) -> Any:
        return data

    @session.on_request(add)
    async def _add(args: AddArgs) -> int:
        return args.a + args.b

    @session.on_request(fail)
    async def _fail(_: None) -> None:
        raise MethodError("boom")

    @session.on_request(hang)
    async def _hang(_: None) -> None:
        await session.wait_closed()

    @session.on_request(close_me)
    async def _close_me(args: CloseArgs) -> None:
        # Never answered: the session closes under the caller's request.
        await session.close(args.code, args.reason)

    @session.on_notification(ask)
    async def _ask(who: str) -> None:
        summary = {
            "confirm": await outcome(session.request(confirm, who, timeout=5)),
            "nope": await outcome(session.request(nope, who, timeout=5)),
        }
        record.add("asked", who, summary)
        await session.notify(confirmed, summary)

    @session.on_notification(note)
    async def _note(data: Any) -> None:
        record.add("note", data)

    @session.on_request(report)
    async def _report(data: Any) -> str:
        record.add("report", data)
        return "thanks"

    record.add("opened", session.path)
    await session.notify(welcome, "hi")
    await session.wait_closed()
    record.add("closed", session.close_code, session.close_reason)


# -- the client side of the scenario -----------------------------------------------------


def serve_confirm(session: AnySession) -> None:
    """What a scenario client serves: `confirm` ("refuse" is refused, with "refused")."""

    @session.on_request(confirm)
    async def _confirm(who: str) -> str:
        if who == "refuse":
            raise MethodError("refused")
        return f"yes from {who}"


# -- the two loops, behind one face --------------------------------------------------------


class EventLike(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> object: ...


@attrs.frozen
class Kit:
    """One adapter and its loop: enough to write a client once for both."""

    name: str
    connect: Callable[..., AbstractAsyncContextManager[AnySession]]
    event: Callable[[], EventLike]
    sleep: Callable[[float], Awaitable[None]]
    run: Callable[[Callable[[], Awaitable[Any]], float], Any]
    within: Callable[[float, Awaitable[Any]], Awaitable[Any]]


def run_trio(main: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run `main` with `trio.run`, failing it after `timeout` seconds."""

    async def guarded() -> T:
        with trio.fail_after(timeout):
            return await main()

    return trio.run(guarded)


def run_asyncio(main: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run `main` on a fresh asyncio loop, failing it after `timeout` seconds, and fail the
    test if the loop reported an error (a task destroyed while pending, an unread exception)."""
    errors: list[dict[str, Any]] = []

    async def guarded() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        async with asyncio.timeout(timeout):
            return await main()

    result = asyncio.run(guarded())
    assert not errors, f"the event loop reported errors: {errors}"
    return result


async def _trio_within(seconds: float, awaitable: Awaitable[T]) -> T:
    with trio.fail_after(seconds):
        return await awaitable


async def _asyncio_within(seconds: float, awaitable: Awaitable[T]) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


KITS = {
    "trio": Kit("trio", session_trio.connect, trio.Event, trio.sleep, run_trio, _trio_within),
    "asyncio": Kit(
        "asyncio", session_asyncio.connect, asyncio.Event, asyncio.sleep, run_asyncio, _asyncio_within
    ),
}

# -- our servers, each in a thread with its own loop -----------------------------------------


@attrs.frozen
class Served:
    """A scenario server running in a thread."""

    adapter: str
    port: int
    record: Record
    shut_down: Callable[[], None] = attrs.field(eq=False)
    "Ask the server to shut down (closing its sessions with 1001), from any thread, at once."

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@contextlib.contextmanager
def serving(adapter: str, *, config: Config | None = None, timeout: float = 30.0) -> Iterator[Served]:
    """Run the scenario server of `adapter` in a thread; shut it down at the end.

    `timeout` bounds the server's whole life, so that a hang cannot stall the suite.
    """
    record = Record()
    if adapter == "trio":

        async def trio_on_session(session: session_trio.Session) -> None:
            await scenario_session(session, record)

        serve_trio = functools.partial(session_trio.serve, trio_on_session, "127.0.0.1", 0, config=config)
        with trio_thread(timeout) as portal:
            listeners = portal.start(serve_trio)
            listener = listeners[0]
            assert isinstance(listener, trio.SocketListener)
            yield Served(adapter, listener.socket.getsockname()[1], record, portal.cancel)
    else:

        async def asyncio_on_session(session: session_asyncio.Session) -> None:
            await scenario_session(session, record)

        with asyncio_thread(timeout) as loop_thread:

            async def start() -> session_asyncio.Server:
                return await session_asyncio.serve(asyncio_on_session, "127.0.0.1", 0, config=config)

            server = loop_thread.call(start)

            def shut_down() -> None:
                loop_thread.loop.call_soon_threadsafe(server.close)

            try:
                yield Served(adapter, server.sockets[0].getsockname()[1], record, shut_down)
            finally:

                async def stop() -> None:
                    server.close()
                    try:
                        async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                            await server.wait_closed()
                    except TimeoutError:
                        raise AssertionError(
                            f"server.wait_closed() did not return within {SHUTDOWN_TIMEOUT} s"
                        ) from None

                loop_thread.call(stop)


class TrioPortal:
    """Calls into a trio loop that runs in another thread."""

    def __init__(self, token: trio.lowlevel.TrioToken, nursery: trio.Nursery) -> None:
        self.token = token
        self.nursery = nursery

    def start(self, fn: Callable[..., Awaitable[Any]]) -> Any:
        """`nursery.start(fn)` in the loop's nursery; returns what `fn` started with."""
        return trio.from_thread.run(self.nursery.start, fn, trio_token=self.token)

    def cancel(self) -> None:
        """Cancel everything the loop runs (it then ends); does nothing once it has ended."""
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self.nursery.cancel_scope.cancel, trio_token=self.token)


@contextlib.contextmanager
def trio_thread(timeout: float) -> Iterator[TrioPortal]:
    """A trio loop in a thread, with a nursery; cancelled (and joined) at the end."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                box["portal"] = TrioPortal(trio.lowlevel.current_trio_token(), nursery)
                ready.set()
                await trio.sleep_forever()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="trio-server", daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the trio thread did not start"
        if "portal" not in box:
            raise AssertionError("the trio thread failed") from box.get("error")
        portal: TrioPortal = box["portal"]
        yield portal
    finally:
        if "portal" in box:
            box["portal"].cancel()
        thread.join(5)
        assert not thread.is_alive(), "the trio thread did not end"
    if "error" in box:
        raise AssertionError("the trio thread failed") from box["error"]


class LoopThread:
    """Calls into an asyncio loop that runs in another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run `fn()` on the loop and return its result (blocking this thread)."""

        async def wrapped() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)


@contextlib.contextmanager
def asyncio_thread(timeout: float) -> Iterator[LoopThread]:
    """An asyncio loop in a thread; stopped (after its tasks end) and joined at the end."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: errors.append(context))
        stop = box["stop"] = asyncio.Event()
        box["thread"] = LoopThread(loop)
        ready.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await stop.wait()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=target, name="asyncio-server", daemon=True)
    thread.start()
    try:
        assert ready.wait(10), "the asyncio thread did not start"
        if "thread" not in box:
            raise AssertionError("the asyncio thread failed") from box.get("error")
        loop_thread: LoopThread = box["thread"]
        yield loop_thread
    finally:
        if "thread" in box:
            with contextlib.suppress(RuntimeError):  # the loop ended already
                box["thread"].loop.call_soon_threadsafe(box["stop"].set)
        thread.join(5)
        assert not thread.is_alive(), "the asyncio thread did not end"
    if "error" in box:
        raise AssertionError("the asyncio thread failed") from box["error"]
    assert not errors, f"the server's event loop reported errors: {errors}"


# -- logs ---------------------------------------------------------------------------------


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """No WARNING or ERROR record from our packages: a normal end is not an error."""
    loud = [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.name.split(".")[0] in {"session_core", "session_trio", "session_asyncio"}
        and r.levelno >= logging.WARNING
    ]
    assert not loud, loud
