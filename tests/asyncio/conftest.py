"""Runs the `async def` tests of this directory on asyncio's default loop and on uvloop.

Each test gets a fresh loop (`asyncio.Runner(loop_factory=...)`). A test fails when it
leaves a task running, when the loop reports an error to its exception handler ("Task was
destroyed but it is pending", "Future exception was never retrieved", a callback that
raised), or when it runs longer than `TEST_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

TEST_TIMEOUT = 15.0

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOPS), autouse=True)
def loop_name(request: pytest.FixtureRequest) -> str:
    """The event loop the test runs on."""
    return str(request.param)


async def _guarded(test: Coroutine[Any, Any, None]) -> None:
    async with asyncio.timeout(TEST_TIMEOUT):
        await test
    # Give callbacks scheduled by the last close a few turns to run, then nothing may be left.
    current = asyncio.current_task()
    for _ in range(20):
        if not asyncio.all_tasks() - {current}:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"tasks left running: {asyncio.all_tasks() - {current}}")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a coroutine test function to completion on the loop of `loop_name`."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    loop_factory = LOOPS[str(pyfuncitem.funcargs["loop_name"])]
    errors: list[dict[str, Any]] = []

    def on_error(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # In debug mode asyncio reports a client that drops its TLS handshake (as the
        # certificate verification test makes it do); that is not an error of ours.
        if context.get("message") != "Error on transport creation for incoming connection":
            errors.append(context)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.get_loop().set_exception_handler(on_error)
        runner.run(_guarded(function(**kwargs)))
        gc.collect()  # so that futures dropped with an unread exception report it now
        runner.run(asyncio.sleep(0))
    assert not errors, f"the event loop reported errors: {errors}"
    return True
