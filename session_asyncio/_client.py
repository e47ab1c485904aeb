"""Opening client sessions: `connect()` (ws:// and wss://) and `unix_connect()`; one
session after another: `reconnecting()` and `keep_connected()`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn

from session_core import Backoff, Config, Connection, HandshakeError, LocalProtocolError
from session_core.driver import Reconnecting, parse_url
from session_core.driver import keep_connected as _keep_connected

from ._session import Session, logger

__all__ = ["connect", "keep_connected", "reconnecting", "unix_connect"]

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


def reconnecting(
    url: str,
    *,
    headers: HeaderItems = (),
    subprotocols: Iterable[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: Config | None = None,
    connect_timeout: float | None = 10.0,
    backoff: Backoff | None = None,
) -> Reconnecting[Session]:
    """Sessions to one server, reconnecting after each one ends, with a backoff.

    An async context manager around an async iterator of open sessions::

        async with session_asyncio.reconnecting(url, backoff=Backoff(max_delay=10)) as sessions:
            async for session in sessions:
                session.on_notification(tick, on_tick)  # for each new session
                await session.wait_closed()  # the next iteration reconnects

    Each session is opened as `connect()` opens one; register its handlers before the
    first `await`. The next iteration closes the session if still open, waits the
    backoff's delay and connects again, also after a failed attempt; it ends by raising
    a failure not worth retrying (`session_core.driver.should_retry`): `SessionClosed`
    for a session closed with 1008 (policy violation) and the like, `HandshakeRejected`
    for a 4xx refusal, `LocalProtocolError` for a bad URL, a certificate that does not
    verify. Requests waiting when a session ends fail with `SessionClosed`: none is sent
    again on the next session. Leaving the block closes the current session (1000 after
    `break`, 1001 on an exception or a cancellation). The `async with` closes
    the session at once where a bare async generator would leave it to the garbage
    collector (and it is the same in `session_trio`, where a nursery requires it).

    Args:
        url: `ws://host:port/path?query` or `wss://...`, as for `connect()`.
        headers: extra headers for each upgrade request.
        subprotocols: subprotocols to offer, in order of preference.
        ssl_context: the TLS context for `wss://`, as for `connect()`.
        config: limits and timeouts of each session.
        connect_timeout: seconds for each connection attempt, as for `connect()`; one
            that times out is retried.
        backoff: the delays between attempts (default `Backoff()`: from 0.5-1 s,
            doubling, up to 30 s).

    Returns:
        A `session_core.driver.Reconnecting` of `Session`.
    """
    headers, subprotocols = tuple(headers), tuple(subprotocols)  # used once per attempt
    return Reconnecting(
        functools.partial(
            connect,
            url,
            headers=headers,
            subprotocols=subprotocols,
            ssl_context=ssl_context,
            config=config,
            connect_timeout=connect_timeout,
        ),
        sleep=asyncio.sleep,
        clock=_clock,
        random=random.random,
        backoff=backoff,
        logger=logger,
        where=url,
    )


async def keep_connected(
    on_session: Callable[[Session], Awaitable[object]],
    url: str,
    *,
    headers: HeaderItems = (),
    subprotocols: Iterable[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    config: Config | None = None,
    connect_timeout: float | None = 10.0,
    backoff: Backoff | None = None,
) -> NoReturn:
    """Run `on_session(session)` on each session to `url`, reconnecting as `reconnecting()`.

    The callback form of `reconnecting()`: `on_session` registers the session's handlers
    (before its first `await`) and may use it; its return does not close the session,
    and the next one is opened once it has ended. It runs until cancelled, until
    `on_session` raises (the session is sent 1001 and the exception propagates), or until
    a failure not worth retrying, which it raises.

    Args:
        on_session: `async def on_session(session) -> None`, called for each new session.
        url: as for `reconnecting()`.
        headers: as for `reconnecting()`.
        subprotocols: as for `reconnecting()`.
        ssl_context: as for `reconnecting()`.
        config: as for `reconnecting()`.
        connect_timeout: as for `reconnecting()`.
        backoff: as for `reconnecting()`.
    """
    sessions = reconnecting(
        url,
        headers=headers,
        subprotocols=subprotocols,
        ssl_context=ssl_context,
        config=config,
        connect_timeout=connect_timeout,
        backoff=backoff,
    )
    await _keep_connected(sessions, on_session)


def _clock() -> float:
    return asyncio.get_running_loop().time()


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
