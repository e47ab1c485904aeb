"""Runs each `async def` test of this directory once per backend: trio, asyncio, uvloop.

A test asks for the `backend` fixture and writes its body against it; the body runs under
`Backend.run`: a fresh loop, a deadline, and no task left behind.
"""

from __future__ import annotations

import functools
import inspect

import pytest

from .backend import BACKENDS, Backend

#: Real seconds a test may take (the machine is shared: generous).
TEST_TIMEOUT = 30.0


@pytest.fixture(params=BACKENDS, ids=[b.name for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The adapter and loop the test runs on."""
    chosen = request.param
    assert isinstance(chosen, Backend)
    return chosen


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a coroutine test function to completion on its backend's loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    arguments = pyfuncitem.funcargs
    chosen = arguments.get("backend")
    assert isinstance(chosen, Backend), "an async test here takes the `backend` fixture"
    body = functools.partial(
        pyfuncitem.obj, **{name: arguments[name] for name in pyfuncitem._fixtureinfo.argnames}
    )
    chosen.run(body, timeout=TEST_TIMEOUT)
    return True
