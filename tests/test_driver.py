"""session_core.driver: its names, and the policy it gives both adapters alike.

The behaviour tests run the same scenario over `session_trio` and `session_asyncio`
(real sockets on loopback): the catch-all handlers and the promise on ordering, which
both adapters get from the one place that dispatches handlers.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import session_asyncio
import session_core.driver
import session_trio
from session_core import (
    Method,
    MethodError,
    MethodNotFound,
    NotificationReceived,
    RemoteError,
    RequestReceived,
)

Sleep = Callable[[float], Awaitable[object]]
Driver = session_core.driver.SessionDriver[Any, Any]
Scenario = Callable[[Any, Sleep], Awaitable[object]]

add = Method("add", request=list[int], response=int, error=str)
probe = Method("probe", request=None, response=list[str], error=None)
slow = Method("slow", request=int, response=None, error=None)


def test_exports() -> None:
    assert sorted(session_core.driver.__all__) == [
        "AnyNotificationHandler",
        "AnyRequestHandler",
        "Decision",
        "MAX_QUEUED_NOTIFICATIONS",
        "NotificationHandler",
        "OUTCOMES",
        "RETRIED_CLOSE_CODES",
        "RETRIED_STATUS_CODES",
        "Reconnecting",
        "Reconnector",
        "RequestHandler",
        "SessionDriver",
        "TEARDOWN_GRACE",
        "UpgradeHook",
        "WebSocketURL",
        "describe_error",
        "encode_json",
        "keep_connected",
        "log_event",
        "parse_url",
        "result_of",
        "serve_session",
        "should_retry",
        "upgrade_decision",
    ]
    for name in session_core.driver.__all__:
        assert getattr(session_core.driver, name) is not None


def test_both_sessions_are_drivers() -> None:
    assert issubclass(session_trio.Session, session_core.driver.SessionDriver)
    assert issubclass(session_asyncio.Session, session_core.driver.SessionDriver)


# What an adapter subclass implements or may override: the contract both adapters (and any
# third driver) are written against, whichever module of the package defines each one.
PRIMITIVES = (
    "_now",
    "_clock",
    "_new_waiter",
    "_park",
    "_wake",
    "_spawn",
    "_spawn_notifier",
    "_cancel",
    "_flush",
    "_sent",
    "_arm_timer",
    "_write_blocked",
    "_drained",
    "_checkpoint",
    "_session_ended",
    "_begin",
    "start",
    "wait_closed",
)


@pytest.mark.parametrize("session_class", [session_trio.Session, session_asyncio.Session])
def test_the_adapters_implement_every_primitive_the_driver_leaves_open(session_class: type[Driver]) -> None:
    base = session_core.driver.SessionDriver
    for name in PRIMITIVES:
        assert callable(getattr(base, name)), name
    # The ones the driver cannot do itself: an adapter that misses one would fail only when
    # the session first needs it.
    optional = {"_clock", "_sent", "_session_ended", "_begin"}
    for name in PRIMITIVES:
        if name not in optional:
            assert getattr(session_class, name) is not getattr(base, name), (session_class, name)


def test_the_driver_package_imports_no_io() -> None:
    # Like the engine (tests/core/test_purity.py): no socket, loop, thread, clock or random
    # in any module of the driver layer.
    forbidden = {"socket", "asyncio", "trio", "selectors", "threading", "time", "random", "ssl"}
    package = Path(session_core.driver.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5
    for path in modules:
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & forbidden, path.name


def _run_trio(on_session: Callable[[Any], Awaitable[object]], client: Scenario) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(session_trio.serve, on_session, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            async with session_trio.connect(f"ws://127.0.0.1:{port}/") as session:
                with trio.fail_after(10):
                    await client(session, trio.sleep)
            nursery.cancel_scope.cancel()

    trio.run(main)


def _run_asyncio(on_session: Callable[[Any], Awaitable[object]], client: Scenario) -> None:
    async def main() -> None:
        async with await session_asyncio.serve(on_session, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with session_asyncio.connect(f"ws://127.0.0.1:{port}/") as session:
                async with asyncio.timeout(10):
                    await client(session, asyncio.sleep)

    asyncio.run(main())


RUNNERS = {"trio": _run_trio, "asyncio": _run_asyncio}
SLEEPS: dict[str, Sleep] = {"trio": trio.sleep, "asyncio": asyncio.sleep}


@pytest.mark.parametrize("adapter", sorted(RUNNERS))
def test_catch_alls_take_what_no_handler_of_its_own_takes(adapter: str) -> None:
    seen: list[str] = []

    async def on_session(session: Driver) -> None:
        @session.on_request(add)
        async def _(numbers: list[int]) -> int:
            return sum(numbers)

        @session.on_request(probe)
        async def _(_: None) -> list[str]:
            return seen

        @session.on_any_request()
        async def _(request: RequestReceived) -> Any:
            if request.method == "fail":
                raise MethodError({"why": request.data})
            if request.method == "forward":
                raise MethodNotFound(-32601, "method not found: forwarded")
            assert request.request_id >= 1
            return {"method": request.method, "data": request.data}

        @session.on_notification(slow)
        async def _(n: int) -> None:
            seen.append(f"slow {n}")

        @session.on_any_notification()
        async def _(notification: NotificationReceived) -> None:
            seen.append(f"{notification.method} {notification.data!r}")

    async def client(session: Driver, sleep: Sleep) -> None:
        # Raw JSON in and out, by name; the typed handlers keep their own methods.
        assert await session.request("anything", {"x": [1, 2]}) == {
            "method": "anything",
            "data": {"x": [1, 2]},
        }
        assert await session.request(add, [1, 2, 3]) == 6
        with pytest.raises(RemoteError) as failed:
            await session.request("fail", 7)
        assert failed.value.error == {"why": 7}
        # A protocol error raised by the catch-all goes out as that protocol error object.
        with pytest.raises(MethodNotFound) as forwarded:
            await session.request("forward", None)
        assert forwarded.value.message == "method not found: forwarded"
        await session.notify("hello", [1, "a"])
        await session.notify(slow, 3)
        await session.notify("bye", None)
        # The probe starts after the notifications before it were handled.
        assert await session.request(probe, None) == ["hello [1, 'a']", "slow 3", "bye None"]

    RUNNERS[adapter](on_session, client)


@pytest.mark.parametrize("adapter", sorted(RUNNERS))
def test_without_a_catch_all_unknown_requests_are_not_found(adapter: str) -> None:
    async def on_session(session: Driver) -> None:
        @session.on_request(add)
        async def _(numbers: list[int]) -> int:
            return sum(numbers)

    async def client(session: Driver, sleep: Sleep) -> None:
        with pytest.raises(MethodNotFound):
            await session.request("anything", 1)

    RUNNERS[adapter](on_session, client)


@pytest.mark.parametrize("adapter", sorted(RUNNERS))
def test_a_handler_starts_after_the_notifications_before_it_while_requests_overlap(adapter: str) -> None:
    # The promise: a handler for a message starts only once the handlers of every
    # notification received before it have finished; requests still run concurrently with
    # each other. trio starts tasks in a random order: repeat, so that a wrong order shows.
    rounds = 30
    log: list[str] = []
    sleep = SLEEPS[adapter]
    gate = Method("gate", request=int, response=int, error=None)

    async def on_session(session: Driver) -> None:
        @session.on_notification(slow)
        async def _(n: int) -> None:
            log.append(f"slow {n} start")
            for _ in range(3):
                await sleep(0)
            await sleep(0.001)
            log.append(f"slow {n} end")

        @session.on_request(probe)
        async def _(_: None) -> list[str]:
            log.append("probe")
            return []

        waiting: list[Any] = []

        @session.on_request(gate)
        async def _(n: int) -> int:
            # The first of two waits for the second: only concurrent requests finish.
            log.append(f"gate {n}")
            if n == 0:
                while not waiting:
                    await sleep(0.001)
            else:
                waiting.append(n)
            return n

    async def client(session: Driver, sleep: Sleep) -> None:
        for n in range(rounds):
            log.clear()
            await session.notify(slow, n)
            await session.notify(slow, n + 1000)
            await session.request(probe, None)
            assert log == [
                f"slow {n} start",
                f"slow {n} end",
                f"slow {n + 1000} start",
                f"slow {n + 1000} end",
                "probe",
            ]
        log.clear()
        await session.notify(slow, -1)
        results: list[int] = []

        async def call(n: int) -> None:
            results.append(await session.request(gate, n))

        if adapter == "trio":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, 0)
                nursery.start_soon(call, 1)
        else:
            await asyncio.gather(call(0), call(1))
        assert sorted(results) == [0, 1]
        assert log[:2] == ["slow -1 start", "slow -1 end"]

    RUNNERS[adapter](on_session, client)
