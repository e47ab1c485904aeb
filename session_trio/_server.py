"""`serve` and `serve_listeners`: accept sessions and hand each to `on_session`."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import ssl
import stat
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeAlias

import trio

from session_core import Accept, Config, Connection, Reject, SessionClosed, State, UpgradeRequested

from ._session import Session, peer_address
from ._tasks import after_first_step, unwrap_groups

logger = logging.getLogger("session_trio")

OnSession: TypeAlias = Callable[[Session], Awaitable[object]]
"`async def on_session(session) -> None`, called once for each new session."
Decision: TypeAlias = Accept | Reject | None
UpgradeHook: TypeAlias = Callable[[UpgradeRequested, Any], Decision | Awaitable[Decision]]
"`on_upgrade(request, remote_address) -> Accept | Reject | None`, sync or async."
Listeners: TypeAlias = list[trio.abc.Listener[Any]]


async def serve(
    on_session: OnSession,
    host: str | bytes | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[Listeners] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve sessions over TCP (or TLS) until cancelled.

    Made for `nursery.start`, which returns the listeners (so that `port=0` picks a free
    port that `listeners[0].socket.getsockname()` tells)::

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(session_trio.serve, on_session, "127.0.0.1", 8080)
            ...
            nursery.cancel_scope.cancel()   # shutdown: each session is closed with 1001

    Args:
        on_session: `async def on_session(session)`, called in a task of its own for each
            new session. Register handlers before its first `await`. Its return does not
            close the session, which stays open until either side closes it; an exception
            from it is logged and closes the session with 1011. It is not cancelled when
            the session ends (only when the server shuts down): await
            `session.wait_closed()` to wait for the end.
        host: the address to bind (`None` binds every interface), as for
            `trio.open_tcp_listeners`.
        port: the port (0 picks a free one).
        ssl_context: a server-side TLS context for `wss://`.
        on_upgrade: decides each upgrade request before the session opens:
            `on_upgrade(request, remote_address)` returns `Accept(...)`, `Reject(...)` or
            `None` (accept), and may be async. An exception from it rejects with 500.
        config: limits and timeouts of each session.
        task_status: for `nursery.start`.

    A plain HTTP `GET` (no upgrade) is answered `200 OK` with body `OK`, as session-rs does.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    await serve_listeners(
        on_session,
        list(listeners),
        ssl_context=ssl_context,
        on_upgrade=on_upgrade,
        config=config,
        task_status=task_status,
    )


async def serve_listeners(
    on_session: OnSession,
    listeners: Sequence[trio.abc.Listener[Any]],
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[Listeners] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve sessions on listeners you made (a unix socket, a socket passed in) until cancelled.

    `serve` with your own listeners: for a unix socket, a `trio.SocketListener` over a bound
    and listening `AF_UNIX` socket. The listeners are closed when serving ends.

    Args:
        on_session: as for `serve`.
        listeners: the listeners to accept connections from.
        ssl_context: when given, each listener is wrapped in a `trio.SSLListener`.
        on_upgrade: as for `serve`.
        config: as for `serve`.
        task_status: for `nursery.start`, which returns the listeners (TLS-wrapped when
            `ssl_context` is given).
    """
    served: Listeners = list(listeners)
    if ssl_context is not None:
        served = [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in served]
    handler = functools.partial(_serve_stream, on_session=on_session, on_upgrade=on_upgrade, config=config)
    with unwrap_groups():
        await trio.serve_listeners(handler, served, task_status=task_status)
    raise AssertionError("trio.serve_listeners returned")  # pragma: no cover


async def unix_serve(
    on_session: OnSession,
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    task_status: trio.TaskStatus[Listeners] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Like `serve()`, on the Unix domain socket at `path`.

    A stale socket file left at `path` by an earlier server is replaced (as asyncio's
    `create_unix_server` does); the file stays when serving ends.

    Args:
        on_session: as for `serve`.
        path: the socket's file system path.
        ssl_context: a server-side TLS context, if any.
        on_upgrade: as for `serve`.
        config: as for `serve`.
        task_status: for `nursery.start`, which returns the listeners.
    """
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen()
    except BaseException:
        sock.close()
        raise
    await serve_listeners(
        on_session,
        [trio.SocketListener(sock)],
        ssl_context=ssl_context,
        on_upgrade=on_upgrade,
        config=config,
        task_status=task_status,
    )


async def _serve_stream(
    stream: trio.abc.Stream, *, on_session: OnSession, on_upgrade: UpgradeHook | None, config: Config | None
) -> None:
    address = peer_address(stream)
    conn = Connection.server(now=trio.current_time(), config=config, methods=(), wait_for_start=True)
    session = Session(conn, stream, address)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(session._run)
            request = await session._wait_upgrade()
            if request is None:
                return  # the connection ended first (a plain GET, a bad request, a timeout)
            # The hook gets no longer than the handshake timeout: past it, the connection
            # has closed and there is nothing left to decide.
            deadline = session._conn.get_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                session._decide(await _decision(on_upgrade, request, address))
            if session._conn.state is State.OPEN:
                nursery.start_soon(_run_on_session, on_session, session)
    except Exception:
        # Never let one connection take the server down.
        logger.exception("unexpected error in the session with %r", address)


async def _decision(on_upgrade: UpgradeHook | None, request: UpgradeRequested, address: Any) -> Decision:
    if on_upgrade is None:
        return None
    try:
        decision = on_upgrade(request, address)
        if inspect.isawaitable(decision):
            decision = await decision
    except Exception:
        logger.exception("on_upgrade failed; rejecting the upgrade from %r with 500", address)
        return Reject(status_code=500)
    return decision


async def _run_on_session(on_session: OnSession, session: Session) -> None:
    try:
        # The session reads no message before on_session's first real await: by then it
        # has registered its handlers.
        await after_first_step(_call(on_session, session), session._start_reading)
    except SessionClosed as exc:
        logger.debug("on_session ended with the session: %s", exc)
    except Exception:
        logger.exception("on_session failed; closing the session with 1011")
        await session.close(1011, "internal error")


async def _call(on_session: OnSession, session: Session) -> object:
    return await on_session(session)
