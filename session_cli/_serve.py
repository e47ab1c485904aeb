"""`session-py serve`: the demo server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import attrs

from session_asyncio import Session, serve
from session_core import (
    Config,
    Method,
    MethodError,
    SessionClosed,
)

from ._common import (
    _CLOSE_TIMEOUT,
    EXIT_CONNECT,
    EXIT_OK,
    Streams,
    _Failure,
    _say,
)

# -- serve ---------------------------------------------------------------------------------


@attrs.frozen
class AddArgs:
    """The request of the demo server's `add`: two numbers."""

    a: int | float
    b: int | float


ECHO: Method[Any, Any, None] = Method("echo", request=Any, response=Any, error=None)
"Demo server: answers its data back."
ADD: Method[AddArgs, int | float, str] = Method("add", request=AddArgs, response=int | float, error=str)
'Demo server: `{"a": 2, "b": 3}` gives `5`.'
FAIL: Method[Any, None, str] = Method("fail", request=Any, response=None, error=str)
'Demo server: always answers the error response `"boom"`.'
SLEEP: Method[float, None, str] = Method("sleep", request=float, response=None, error=str)
"Demo server: answers null after that many seconds (at most 3600); for timeouts."
TICK: Method[int, None, None] = Method("tick", request=int, response=None, error=None)
"Demo server: a notification to each client every `--tick` seconds, with a counter."
WELCOME: Method[str, None, None] = Method("welcome", request=str, response=None, error=None)
'Demo server: the notification `"hi"` to each new client, as session-rs\'s example server.'

_MAX_SLEEP = 3600.0


def _serve_methods(session: Session) -> None:
    """Register the demo server's handlers on `session`."""

    @session.on_request(ECHO)
    async def _echo(data: Any) -> Any:
        return data

    @session.on_request(ADD)
    async def _add(args: AddArgs) -> int | float:
        return args.a + args.b

    @session.on_request(FAIL)
    async def _fail(_: Any) -> None:
        raise MethodError("boom")

    @session.on_request(SLEEP)
    async def _sleep(seconds: float) -> None:
        if not 0 <= seconds <= _MAX_SLEEP:
            raise MethodError(f"seconds must be from 0 to {_MAX_SLEEP:g}")
        await asyncio.sleep(seconds)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


async def _serve(args: argparse.Namespace, streams: Streams) -> int:
    host, port = args.address
    interval: float = args.tick

    def log(text: str) -> None:
        _say(streams.stderr, f"{time.strftime('%H:%M:%S')} {text}")

    async def on_session(session: Session) -> None:
        _serve_methods(session)
        peer = _peer(session.remote_address)
        log(f"{peer} connected (path {session.path})")
        closed = asyncio.ensure_future(session.wait_closed())
        try:
            await session.notify(WELCOME, "hi")
            count = 0
            while interval:
                done, _ = await asyncio.wait((closed,), timeout=interval)
                if done:
                    break
                count += 1
                await session.notify(TICK, count)
            await closed
        except SessionClosed:
            await closed
        finally:
            closed.cancel()
            if session.closed:
                log(f"{peer} disconnected ({session.close_code}{_reason(session.close_reason)})")
            else:
                log(f"{peer} closed by the server shutting down")

    try:
        server = await serve(on_session, host, port, config=Config(close_timeout=_CLOSE_TIMEOUT))
    except OSError as exc:
        shown = f"[{host}]" if host and ":" in host else host or "*"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise _Failure(EXIT_CONNECT, f"cannot listen on {shown}:{port}: {reason}") from None
    async with server:
        for sock in server.sockets:
            log(f"listening on ws://{_peer(sock.getsockname())}/")
        ticks = f"tick every {interval:g} s" if interval else "no tick"
        log(f"methods: echo, add, fail, sleep; notifications: welcome, {ticks}; Ctrl-C stops")
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        # SIGTERM stops it as Ctrl-C does: every session is closed with 1001 first.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await server.serve_forever()
        except asyncio.CancelledError:  # Ctrl-C or SIGTERM
            task.uncancel()
            log("stopped")
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)
    return EXIT_OK


def _reason(reason: str | None) -> str:
    return f": {reason}" if reason else ""
