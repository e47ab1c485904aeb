"""`serve` and `serve_listeners`: accept sessions and hand each to `on_session`."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeAlias

import trio

from session_core import Config, Connection
from session_core.driver import SessionHub, UpgradeHook, serve_session

from ._session import Session, peer_address
from ._tasks import unwrap_groups

logger = logging.getLogger("session_trio")

OnSession: TypeAlias = Callable[[Session], Awaitable[object]]
"`async def on_session(session) -> None`, called once for each new session."
Listeners: TypeAlias = list[trio.abc.Listener[Any]]


async def serve(
    on_session: OnSession,
    host: str | bytes | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    hub: SessionHub | None = None,
    reuse_port: bool = False,
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
        hub: a hub from `open_hub`: each session gets its `id` from it and is attached to
            it (`session.join(group)`, `hub.request(session.id, ...)`) until it ends.
        reuse_port: set `SO_REUSEPORT`, so that several processes (workers) listen on the
            same port and the kernel spreads the connections over them.
        task_status: for `nursery.start`.

    A plain HTTP `GET` (no upgrade) is answered `200 OK` with body `OK`, as session-rs does.
    """
    if reuse_port:
        listeners = await _reuse_port_listeners(port, host)
    else:
        listeners = list(await trio.open_tcp_listeners(port, host=host))
    await serve_listeners(
        on_session,
        listeners,
        ssl_context=ssl_context,
        on_upgrade=on_upgrade,
        config=config,
        hub=hub,
        task_status=task_status,
    )


async def _reuse_port_listeners(port: int, host: str | bytes | None) -> Listeners:
    # `trio.open_tcp_listeners` with SO_REUSEPORT, which it does not offer.
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, type_, proto, _, address in infos:
            sock = trio.socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(address)
                sock.listen()
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return list(listeners)


async def serve_listeners(
    on_session: OnSession,
    listeners: Sequence[trio.abc.Listener[Any]],
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    hub: SessionHub | None = None,
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
        hub: as for `serve`.
        task_status: for `nursery.start`, which returns the listeners (TLS-wrapped when
            `ssl_context` is given).
    """
    served: Listeners = list(listeners)
    if ssl_context is not None:
        served = [trio.SSLListener(listener, ssl_context, https_compatible=True) for listener in served]
    handler = functools.partial(
        _serve_stream, on_session=on_session, on_upgrade=on_upgrade, config=config, hub=hub
    )
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
    hub: SessionHub | None = None,
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
        hub: as for `serve`.
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
        hub=hub,
        task_status=task_status,
    )


def _serve_stream(
    stream: trio.abc.Stream,
    *,
    on_session: OnSession,
    on_upgrade: UpgradeHook | None,
    config: Config | None,
    hub: SessionHub | None = None,
) -> Awaitable[None]:
    # Not a coroutine: the connection's task awaits the session's own (one coroutine less
    # per idle session), which logs what escapes it, never letting one connection take
    # the server down. `on_session` runs in a task of the server's; the upgrade hook runs
    # in the session, bounded by the handshake timeout.
    conn = Connection.server(now=trio.current_time(), config=config, methods=(), wait_for_start=True)
    session = Session(conn, stream, peer_address(stream), upgrade_hook=on_upgrade)
    return session._serve(functools.partial(serve_session, session, on_session, hub=hub))
