"""Checked by `mypy --strict` (CI runs it over tests/): a type checker infers each method's
types, and from them what a request returns. `assert_type` fails the check if inference
drifts; `tests/typing/test_mypy.py` also shows that a wrong type is caught."""

from __future__ import annotations

from typing import Any, assert_type

import attrs

from session_core import Connection, Method


@attrs.frozen
class AddArgs:
    a: int
    b: int


add = Method("add", request=AddArgs, response=int, error=str)
tick = Method("tick", request=int, response=None, error=None)
# A bare `Any` argument is a "special form" to mypy, which then cannot solve `Req` when
# the method is used: methods with `Any` types are annotated (see the README).
echo: Method[Any, Any, str] = Method("echo", request=Any, response=Any, error=str)
listing = Method("list", request=None, response=list[str], error=str)

assert_type(add, Method[AddArgs, int, str])
assert_type(tick, Method[int, None, None])
assert_type(echo, Method[Any, Any, str])
assert_type(listing, Method[None, list[str], str])


def uses(conn: Connection) -> None:
    conn.send_request(add, AddArgs(2, 3))
    conn.send_notification(tick, 1)
    conn.send_request(echo, {"any": ["json"]})
