"""Runs the `async def` tests of this directory with `trio.run`.

A test marked `@pytest.mark.autojump` runs on `trio.testing.MockClock(autojump_threshold=0)`:
virtual time jumps to the next deadline whenever every task waits. Every test runs under a
deadline (real or virtual), so that a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

#: Real seconds a test may take.
TEST_TIMEOUT = 15.0
#: Virtual seconds an autojump test may take (it runs in far less real time).
VIRTUAL_TIMEOUT = 100_000.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "autojump: run the trio test on an autojumping MockClock")


async def _guarded(test: Callable[..., Awaitable[None]], kwargs: dict[str, Any], limit: float) -> None:
    with trio.fail_after(limit):
        await test(**kwargs)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a coroutine test function to completion with `trio.run`."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    if pyfuncitem.get_closest_marker("autojump") is not None:
        clock = trio.testing.MockClock(autojump_threshold=0)
        trio.run(functools.partial(_guarded, function, kwargs, VIRTUAL_TIMEOUT), clock=clock)
    else:
        trio.run(functools.partial(_guarded, function, kwargs, TEST_TIMEOUT))
    return True
