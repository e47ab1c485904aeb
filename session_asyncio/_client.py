"""Opening client sessions: `connect()` (ws:// and wss://) and `unix_connect()`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from session_core import Config, Connection, HandshakeError, LocalProtocolError
from session_core.driver import parse_url

from ._session import Session

__all__ = ["connect", "unix_connect"]

HeaderItems = Iterable[tuple[bytes | str, bytes | str]]
_Opener = Callable[[Callable[[], asyncio.Protocol]], Awaitable[Any]]


@contextlib.asynccontextmanager
async def connect(
    url: str,
    *,
    headers: HeaderItems = (),
    subprotocols: Iterable[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: Config | None = None,
    connect_timeout: float | None = 10.0,
) -> AsyncIterator[Session]:
    """Open a client session on a `ws://` or `wss://` URL.

    An async context manager that yields the open `Session`::

        async with session_asyncio.connect("ws://127.0.0.1:8080/") as session:
            print(await session.request(add, AddArgs(2, 3)))

    Leaving the block normally closes the session with 1000 and waits for the close
    handshake (at most `Config.close_timeout`). Leaving it with an exception, or by
    cancellation, sends a close frame with 1001 ("going away") without waiting, and the
    exception propagates.

    Args:
        url: `ws://host:port/path?query` or `wss://...`; `host:port` is the `Host` header.
        headers: extra headers for the upgrade request (an `Origin`, credentials).
        subprotocols: subprotocols to offer, in order of preference.
        ssl_context: the TLS context for `wss://`; by default
            `ssl.create_default_context()` (certificate and host name verified).
        config: limits and timeouts of the session.
        connect_timeout: seconds for the TCP connection, TLS and the WebSocket handshake
            together (`None`: no limit but `Config.handshake_timeout`).

    Yields:
        The open `Session`.

    Raises:
        OSError: the connection could not be made: refused, unreachable, unknown host, or
            a failed TLS handshake (`ssl.SSLError`, such as `ssl.SSLCertVerificationError`).
        TimeoutError: `connect_timeout` expired.
        HandshakeRejected: the server answered the upgrade with an HTTP error
            (`status_code`, `headers`, `body`).
        HandshakeError: the WebSocket handshake failed otherwise (the connection ended
            first, an invalid response, `Config.handshake_timeout`).
        LocalProtocolError: the URL is not a usable `ws://` or `wss://` URL, or
            `ssl_context` is given for a `ws://` URL.
    """
    target = parse_url(url)
    context: ssl.SSLContext | None = None
    if target.secure:
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
    elif ssl_context is not None:
        raise LocalProtocolError("ssl_context needs a wss:// URL")
    loop = asyncio.get_running_loop()

    def opener(factory: Callable[[], asyncio.Protocol]) -> Awaitable[Any]:
        return loop.create_connection(
            factory,
            target.host,
            target.port,
            ssl=context,
            server_hostname=target.host if context is not None else None,
        )

    async with _open_session(
        opener,
        host=target.host_header,
        target=target.target,
        headers=headers,
        subprotocols=subprotocols,
        config=config,
        connect_timeout=connect_timeout,
    ) as session:
        yield session


@contextlib.asynccontextmanager
async def unix_connect(
    path: str,
    url_path: str = "/",
    *,
    headers: HeaderItems = (),
    subprotocols: Iterable[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: Config | None = None,
    connect_timeout: float | None = 10.0,
) -> AsyncIterator[Session]:
    """Open a client session over a Unix domain socket.

    Like `connect()`, with `Host: localhost` and the request target `url_path`.

    Args:
        path: the socket's file system path.
        url_path: the path and query to request.
        headers: extra headers for the upgrade request.
        subprotocols: subprotocols to offer, in order of preference.
        ssl_context: TLS over the socket, if given (server name `localhost`).
        config: limits and timeouts of the session.
        connect_timeout: seconds for the connection and the handshake together.

    Yields:
        The open `Session`.

    Raises:
        HandshakeRejected, HandshakeError, TimeoutError, OSError: as `connect()`.
    """
    loop = asyncio.get_running_loop()

    def opener(factory: Callable[[], asyncio.Protocol]) -> Awaitable[Any]:
        return loop.create_unix_connection(
            factory,
            path,
            ssl=ssl_context,
            server_hostname="localhost" if ssl_context is not None else None,
        )

    async with _open_session(
        opener,
        host="localhost",
        target=url_path,
        headers=headers,
        subprotocols=subprotocols,
        config=config,
        connect_timeout=connect_timeout,
    ) as session:
        yield session


@contextlib.asynccontextmanager
async def _open_session(
    opener: _Opener,
    *,
    host: str,
    target: str,
    headers: HeaderItems,
    subprotocols: Iterable[str],
    config: Config | None,
    connect_timeout: float | None,
) -> AsyncIterator[Session]:
    loop = asyncio.get_running_loop()
    conn = Connection.client(
        host,
        target,
        now=loop.time(),
        headers=headers,
        subprotocols=subprotocols,
        config=config,
        methods=(),
        wait_for_start=True,
    )
    session = Session(conn, loop)
    try:
        async with asyncio.timeout(connect_timeout):
            await opener(lambda: session._protocol)
            await session.wait_handshake()
    except HandshakeError:
        raise
    except BaseException:
        session._abort()
        raise
    # The user registers handlers before their first `await`: then the connection delivers
    # what the server sent after its 101.
    session.start()
    try:
        yield session
    except BaseException:
        session._going_away()
        raise
    await session.close()
