"""Two task-level helpers: unwrapping our own nurseries' exception groups, and running a
coroutine with a hook on its first yield to trio."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any, TypeVar

import trio

T = TypeVar("T")


@contextlib.contextmanager
def unwrap_groups() -> Iterator[None]:
    """Re-raise the one exception that a nursery of ours wrapped in a group.

    With strict exception groups (trio >= 0.25) a nursery wraps even a single exception.
    The nurseries that `connect` and `serve` open are ours, not the user's, so the user
    sees the exception itself. Only one level is unwrapped: a group the user's own code
    raised stays a group. `Cancelled` siblings are dropped (they are only the nursery's
    other tasks being cancelled); a group of several real errors is left as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
        if len(errors) > 1:
            raise
        sole = errors[0] if errors else group.exceptions[0]
        # Raising inside this `except` would chain the group as the context: keep the
        # exception's own context instead.
        context = sole.__context__
        try:
            raise sole
        finally:
            sole.__context__ = context
            del sole, context


@types.coroutine
def after_first_step(coro: Coroutine[Any, Any, T], callback: Callable[[], object]) -> Generator[Any, Any, T]:
    """Await `coro`, calling `callback()` as soon as it first yields to trio (or ends).

    The server uses it to let `on_session` run up to its first real `await` (where it
    registers its handlers) before the session processes any message, deterministically,
    whatever order trio's scheduler picks. It is plain `yield from` with a hook.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        callback()
        return stop.value  # type: ignore[no-any-return]
    except BaseException:
        callback()
        raise
    callback()
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
