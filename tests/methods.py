"""The methods and types the tests share, written once for the core, both adapters, interop
and the fuzzer.

Names mean the same everywhere: `add` adds two numbers (and refuses a negative `a` with the
error "negative" where `serve_basics` serves it), `echo` answers its data, `fail` always
fails with "boom", `crash` raises an exception that is not a `MethodError`, `sleep` sleeps
the seconds asked and answers them, `picky` answers a structured value or a structured
error, `tick` and `welcome` are notifications. The interop scenario adds `hang`,
`close_me`, `ask`, `note`, `report`, `confirm`, `nope` and `confirmed`
(`tests/interop/support.py` serves them).

`serve_basics` registers the basic methods on a session of either adapter.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import attrs
import trio

import session_asyncio
import session_trio
from session_core import Method, MethodError

AnySession: TypeAlias = session_trio.Session | session_asyncio.Session
"A session of either adapter: both have the same API."


@attrs.frozen
class AddArgs:
    a: int
    b: int


@attrs.frozen
class Problem:
    """A structured error value."""

    reason: str
    retry: bool


@attrs.frozen
class CloseArgs:
    code: int
    reason: str


# Annotated where the request or response is `Any`: mypy cannot infer generics through it.
add = Method("add", request=AddArgs, response=int, error=str)
echo: Method[Any, Any, str] = Method("echo", request=Any, response=Any, error=str)
fail = Method("fail", request=None, response=None, error=str)
crash = Method("crash", request=None, response=None, error=str)
sleep = Method("sleep", request=float, response=float, error=str)
picky = Method("picky", request=int, response=AddArgs, error=Problem)
shout = Method("shout", request=str, response=str, error=str)
tick = Method("tick", request=int, response=None, error=None)
welcome = Method("welcome", request=str, response=None, error=None)

# The interop scenario's.
hang = Method("hang", request=None, response=None, error=str)
close_me = Method("close_me", request=CloseArgs, response=None, error=str)
ask = Method("ask", request=str, response=None, error=None)
note: Method[Any, None, None] = Method("note", request=Any, response=None, error=None)
report: Method[Any, str, None] = Method("report", request=Any, response=str, error=None)
confirm = Method("confirm", request=str, response=str, error=str)
"Served by the scenario's clients; the server calls it."
nope = Method("nope", request=str, response=str, error=str)
"Served by no one: calling it gets 'method not found' (`NOT_FOUND_NOPE`)."
confirmed: Method[Any, None, None] = Method("confirmed", request=Any, response=None, error=None)

NOT_FOUND_NOPE = {"code": -32601, "message": "method not found: nope"}
"The protocol error object answering a request for `nope`, as JSON."


async def loop_sleep(seconds: float) -> None:
    """Sleep on whichever loop runs this task (trio's clock, so a `MockClock` too, or asyncio's)."""
    if trio.lowlevel.in_trio_run():
        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


def serve_basics(session: AnySession) -> None:
    """Register `add`, `echo`, `fail`, `crash`, `sleep` and `picky` on `session`."""

    @session.on_request(add)
    async def _add(args: AddArgs) -> int:
        if args.a < 0:
            raise MethodError("negative")
        return args.a + args.b

    @session.on_request(echo)
    async def _echo(data: Any) -> Any:
        return data

    @session.on_request(fail)
    async def _fail(_: None) -> None:
        raise MethodError("boom")

    @session.on_request(crash)
    async def _crash(_: None) -> None:
        raise ValueError("secret detail")

    @session.on_request(sleep)
    async def _sleep(seconds: float) -> float:
        await loop_sleep(seconds)
        return seconds

    @session.on_request(picky)
    async def _picky(n: int) -> AddArgs:
        if n < 0:
            raise MethodError(Problem(reason="negative", retry=False))
        return AddArgs(n, n + 1)


async def basic_on_session(session: AnySession) -> None:
    """An `on_session` that serves the basic methods."""
    serve_basics(session)
