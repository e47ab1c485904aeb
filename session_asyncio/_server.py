"""Serving sessions: `serve()` (TCP, optionally TLS), `unix_serve()` and `Server`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from session_core import CloseCode, Config, Connection
from session_core.driver import SessionHub, UpgradeHook, serve_session

from ._session import Session

__all__ = ["OnSession", "Server", "serve", "unix_serve"]

OnSession: TypeAlias = Callable[[Session], Awaitable[object]]
"""`async def on_session(session) -> None`, called once for each new session."""


class Server:
    """A listening server, as `serve()` and `unix_serve()` return it.

    An async context manager: leaving the block closes the server and waits until every
    session and task it started has ended::

        async with await session_asyncio.serve(on_session, "127.0.0.1", 8080) as server:
            await server.serve_forever()
    """

    def __init__(
        self,
        on_session: OnSession,
        *,
        on_upgrade: UpgradeHook | None,
        config: Config | None,
        loop: asyncio.AbstractEventLoop,
        hub: SessionHub | None = None,
    ) -> None:
        """Built by `serve()` and `unix_serve()`, not by users."""
        self._on_session = on_session
        self._hub = hub
        self._on_upgrade = on_upgrade
        self._config = config
        self._loop = loop
        self._server: asyncio.Server | None = None
        self._sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed: asyncio.Future[None] = loop.create_future()

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets (empty once closed)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def sessions(self) -> frozenset[Session]:
        """The sessions this server holds right now (open or opening)."""
        return frozenset(self._sessions)

    def is_serving(self) -> bool:
        """True while the server accepts new connections."""
        return self._server is not None and self._server.is_serving()

    def close(self) -> None:
        """Stop listening, close every session with 1001 and cancel the tasks it started.

        Returns at once; `wait_closed()` waits for the end of it all.
        """
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.close_nowait(CloseCode.GOING_AWAY, "going away")
        for task in self._tasks:
            task.cancel()
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every session and task it started has ended."""
        if not self._closed.done():
            await asyncio.wait((self._closed,))
        if self._server is not None:
            await self._server.wait_closed()
        current = asyncio.current_task()
        while True:
            waits: list[Awaitable[Any]] = [session.wait_closed() for session in self._sessions]
            tasks = [task for task in self._tasks if task is not current]
            if tasks:
                waits.append(asyncio.wait(tasks))
            if not waits:
                return
            await asyncio.gather(*waits)

    async def serve_forever(self) -> None:
        """Serve until `close()` is called, or until cancelled (then close and wait)."""
        try:
            await asyncio.wait((self._closed,))
        finally:
            self.close()
            await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # -- internal ----------------------------------------------------------------------

    def _make_protocol(self) -> asyncio.Protocol:
        loop = self._loop
        conn = Connection.server(now=loop.time(), config=self._config, methods=(), wait_for_start=True)
        session = Session(
            conn,
            loop,
            on_upgrade=self._on_upgrade,
            on_made=self._made,
            on_finished=self._finished,
        )
        return session._protocol

    def _made(self, session: Session) -> None:
        # Counted from here, not from the protocol factory: with TLS, a connection whose
        # TLS handshake fails never reaches `connection_made` nor `connection_lost`.
        self._sessions.add(session)
        if self._closing:
            session.close_nowait(CloseCode.GOING_AWAY, "going away")
            return
        # Waits for the handshake (the upgrade hook runs in the session), then runs
        # `on_session`; the session delivers messages once `on_session` first yields.
        task = self._loop.create_task(serve_session(session, self._on_session, hub=self._hub))
        if not task.done():  # an eager task factory may have run it to its end already
            self._tasks.add(task)
            # A callback, not a `finally` in the coroutine: a task cancelled before its
            # first step never runs its coroutine.
            task.add_done_callback(self._tasks.discard)

    def _finished(self, session: Session) -> None:
        self._sessions.discard(session)


async def serve(
    on_session: OnSession,
    host: str | None,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    hub: SessionHub | None = None,
    reuse_port: bool = False,
    **kwargs: Any,
) -> Server:
    """Listen on `host:port` and call `await on_session(session)` for each new session.

    Like `asyncio.start_server`. Each `on_session` runs in its own task; its return does
    not close the session, which stays open until either side closes it (its handlers
    keep serving). An exception from it is logged and the session closed with 1011.
    A plain HTTP `GET` is answered `200 OK` with the body `OK`.

    Args:
        on_session: `async def on_session(session) -> None`.
        host: the interface to bind (`None` or `""`: all).
        port: the TCP port (0: any free port; see `Server.sockets`).
        ssl_context: a server-side TLS context, for `wss://`.
        on_upgrade: `on_upgrade(request: UpgradeRequested, remote_address)`, sync or
            async, decides on each upgrade before the session opens: `Accept(...)` (or
            `None`) accepts, `Reject(status_code, body)` refuses with an HTTP error.
        config: limits and timeouts of each session.
        hub: a hub from `open_hub`: each session gets its `id` from it and is attached to
            it (`session.join(group)`, `hub.request(session.id, ...)`) until it ends.
        reuse_port: set `SO_REUSEPORT`, so that several processes (workers) listen on the
            same port and the kernel spreads the connections over them.
        **kwargs: passed on to `loop.create_server` (`backlog`...).

    Returns:
        The listening `Server`.
    """
    loop = asyncio.get_running_loop()
    server = Server(on_session, on_upgrade=on_upgrade, config=config, loop=loop, hub=hub)
    _bound_tls_handshake(ssl_context, config, kwargs)
    if reuse_port:
        kwargs["reuse_port"] = True
    server._server = await loop.create_server(server._make_protocol, host, port, ssl=ssl_context, **kwargs)
    return server


async def unix_serve(
    on_session: OnSession,
    path: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_upgrade: UpgradeHook | None = None,
    config: Config | None = None,
    hub: SessionHub | None = None,
    **kwargs: Any,
) -> Server:
    """Like `serve()`, on the Unix domain socket at `path`.

    Args:
        on_session: `async def on_session(session) -> None`.
        path: the socket's file system path.
        ssl_context: a server-side TLS context, if any.
        on_upgrade: decides on each upgrade, as for `serve()`.
        config: limits and timeouts of each session.
        hub: as for `serve()`.
        **kwargs: passed on to `loop.create_unix_server`.

    Returns:
        The listening `Server`.
    """
    loop = asyncio.get_running_loop()
    server = Server(on_session, on_upgrade=on_upgrade, config=config, loop=loop, hub=hub)
    _bound_tls_handshake(ssl_context, config, kwargs)
    server._server = await loop.create_unix_server(server._make_protocol, path, ssl=ssl_context, **kwargs)
    return server


def _bound_tls_handshake(
    ssl_context: ssl.SSLContext | None, config: Config | None, kwargs: dict[str, Any]
) -> None:
    # The session (and its handshake timer) starts only once TLS is up: bound the TLS
    # handshake by the same timeout, or a peer that never finishes it is held for asyncio's
    # default of 60 s.
    timeout = (config or Config()).handshake_timeout
    if ssl_context is not None and timeout is not None:
        kwargs.setdefault("ssl_handshake_timeout", timeout)
