"""`session-py call` and `session-py notify`: one request or one notification."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

from session_asyncio import Session, connect
from session_core import (
    HandshakeError,
    ProtocolErrorResponse,
    RemoteError,
    SessionClosed,
)

from ._common import (
    _NAME,
    EXIT_CLOSED,
    EXIT_ERROR_RESPONSE,
    EXIT_OK,
    EXIT_TIMEOUT,
    Progress,
    Streams,
    _check_url,
    _client_config,
    _connection_failure,
    _dumps,
    _Failure,
    _host_port,
    _read_json,
    _say,
    _ssl_context,
    _timeout_or_none,
)

# -- call and notify ----------------------------------------------------------------------


async def _call(args: argparse.Namespace, streams: Streams) -> int:
    data = _read_json(args.json, streams.stdin)
    url = _check_url(args.url)
    method: str = args.method
    timeout = _timeout_or_none(args.timeout)
    connecting = f"connecting to {_host_port(url)}"
    async with Progress(streams.stderr, connecting) as progress, _open(url, args) as session:
        progress.status = f"waiting for the answer to {method}"
        try:
            result = await session.request(method, data, timeout=timeout)
        except ProtocolErrorResponse as exc:
            await progress.stop()
            _say(streams.stdout, _dumps(exc.error, pretty=args.pretty))
            _say(streams.stderr, f"{_NAME}: {method}: {exc.message} ({exc.code})")
            return EXIT_ERROR_RESPONSE
        except RemoteError as exc:
            await progress.stop()
            _say(streams.stdout, _dumps(exc.error, pretty=args.pretty))
            _say(streams.stderr, f"{_NAME}: {method} answered with an error response")
            return EXIT_ERROR_RESPONSE
        except TimeoutError:
            raise _Failure(
                EXIT_TIMEOUT,
                f"no answer to {method} within {args.timeout:g} s (--timeout); the request was cancelled",
            ) from None
        except SessionClosed as exc:
            raise _Failure(EXIT_CLOSED, f"the session ended before the answer to {method}: {exc}") from None
        await progress.stop()
        _say(streams.stdout, _dumps(result, pretty=args.pretty))
    return EXIT_OK


async def _notify(args: argparse.Namespace, streams: Streams) -> int:
    data = _read_json(args.json, streams.stdin)
    url = _check_url(args.url)
    async with Progress(streams.stderr, f"connecting to {_host_port(url)}"), _open(url, args) as session:
        try:
            await session.notify(args.method, data)
        except SessionClosed as exc:
            raise _Failure(
                EXIT_CLOSED, f"the session ended before the notification was sent: {exc}"
            ) from None
    return EXIT_OK


@contextlib.asynccontextmanager
async def _open(url: str, args: argparse.Namespace) -> AsyncIterator[Session]:
    """`connect()` with the options of the command line, its failures as `_Failure`."""
    connecting = True
    try:
        async with connect(
            url,
            headers=args.header,
            ssl_context=_ssl_context(url, args),
            config=_client_config(),
            connect_timeout=_timeout_or_none(args.connect_timeout),
        ) as session:
            connecting = False
            yield session
    except (OSError, HandshakeError) as exc:  # TimeoutError is an OSError
        failure = _connection_failure(exc, url, args.connect_timeout) if connecting else None
        if failure is None:
            raise
        raise failure from None
