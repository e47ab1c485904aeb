"""`connect` and `unix_connect`: open a client session."""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import trio

from session_core import Config, Connection, LocalProtocolError
from session_core.driver import parse_url

from ._session import Session, peer_address
from ._tasks import unwrap_groups

HeaderItems = Iterable[tuple[bytes | str, bytes | str]]


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

        async with session_trio.connect("ws://127.0.0.1:8080/") as session:
            print(await session.request(add, AddArgs(2, 3)))

    Leaving the block normally closes the session with 1000 and waits for the close
    handshake (at most `Config.close_timeout`). Leaving it with an exception, or by
    cancellation, sends a close frame with 1001 ("going away") without waiting, and the
    exception propagates as itself (never wrapped in an exception group).

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
        TimeoutError: the builtin one: `connect_timeout` expired.
        HandshakeRejected: the server answered the upgrade with an HTTP error
            (`status_code`, `headers`, `body`).
        HandshakeError: the WebSocket handshake failed otherwise (the connection ended
            first, an invalid response, `Config.handshake_timeout`).
        LocalProtocolError: the URL is not a usable `ws://` or `wss://` URL, or
            `ssl_context` is given for a `ws://` URL.
    """
    target = parse_url(url)
    if ssl_context is not None and not target.secure:
        raise LocalProtocolError("ssl_context needs a wss:// URL")

    async def open_stream() -> trio.abc.Stream:
        # trio's SocketStream sets TCP_NODELAY itself.
        stream = await trio.open_tcp_stream(target.host, target.port)
        if not target.secure:
            return stream
        context = ssl_context if ssl_context is not None else ssl.create_default_context()
        return await _start_tls(stream, context, target.host)

    conn = Connection.client(
        target.host_header,
        target.target,
        now=trio.current_time(),
        headers=headers,
        subprotocols=subprotocols,
        config=config,
        methods=(),
        wait_for_start=True,
    )
    async with _open_session(conn, open_stream, connect_timeout, url) as session:
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

    async def open_stream() -> trio.abc.Stream:
        stream = await trio.open_unix_socket(path)
        if ssl_context is None:
            return stream
        return await _start_tls(stream, ssl_context, "localhost")

    conn = Connection.client(
        "localhost",
        url_path,
        now=trio.current_time(),
        headers=headers,
        subprotocols=subprotocols,
        config=config,
        methods=(),
        wait_for_start=True,
    )
    async with _open_session(conn, open_stream, connect_timeout, path) as session:
        yield session


@contextlib.asynccontextmanager
async def _open_session(
    conn: Connection,
    open_stream: Callable[[], Awaitable[trio.abc.Stream]],
    connect_timeout: float | None,
    where: str,
) -> AsyncIterator[Session]:
    deadline = math.inf if connect_timeout is None else trio.current_time() + connect_timeout
    stream: trio.abc.Stream | None = None
    with trio.move_on_at(deadline):
        stream = await open_stream()
    if stream is None:
        raise TimeoutError(f"connecting to {where} timed out")
    session = Session(conn, stream, peer_address(stream))
    with unwrap_groups():
        async with trio.open_nursery() as nursery:
            await nursery.start(session._run)
            with trio.move_on_at(deadline):
                await session.wait_handshake()
            if not session.handshake_over:
                raise TimeoutError(f"the WebSocket handshake with {where} timed out")
            session.start()
            yield session
            await session.close()


async def _start_tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, server_name: str
) -> trio.SSLStream[trio.abc.Stream]:
    # https_compatible: a WebSocket peer may end TLS without close_notify, as HTTPS does.
    tls = trio.SSLStream(stream, context, server_hostname=server_name, https_compatible=True)
    try:
        await tls.do_handshake()
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, trio.BrokenResourceError):
            if isinstance(exc.__cause__, ssl.SSLError):
                raise exc.__cause__ from None
            raise ConnectionError(f"TLS handshake with {server_name} failed: {exc}") from exc
        raise
    return tls
