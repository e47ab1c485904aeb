"""`session-py listen`: print what the server sends, one JSON line per message.

A `session_asyncio.Session` with the catch-all handlers (`on_any_request`,
`on_any_notification`) sees every message whatever its method, so `listen` is a plain
client; with `--reconnect` it is a `session_asyncio.reconnecting()` loop.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from session_asyncio import Session, reconnecting
from session_core import (
    Backoff,
    HandshakeError,
    LocalProtocolError,
    MethodNotFound,
    NotificationReceived,
    RequestReceived,
    SessionClosed,
)

from ._call import _open
from ._common import (
    _NAME,
    _NORMAL_CLOSES,
    EXIT_CLOSED,
    EXIT_OK,
    Streams,
    _check_url,
    _client_config,
    _connection_failure,
    _dumps,
    _isatty,
    _read_json,
    _say,
    _ssl_context,
    _timeout_or_none,
)


class _NoAnswer:
    pass


_NO_ANSWER: Any = _NoAnswer()


class _Listener:
    """Prints what each session receives, answers its requests, and says when to stop."""

    def __init__(self, args: argparse.Namespace, streams: Streams, url: str, answer: Any) -> None:
        self.args, self.streams, self.url, self.answer = args, streams, url, answer
        self.received = 0
        self.stopping = False
        self.status = EXIT_OK
        self._stop = asyncio.Event()

    def attach(self, session: Session) -> None:
        """Print and answer everything `session` receives."""

        @session.on_any_notification()
        async def _(notification: NotificationReceived) -> None:
            self.emit({"type": "notification", "method": notification.method, "data": notification.data})

        @session.on_any_request()
        async def _(request: RequestReceived) -> Any:
            message = {"type": "request", "id": request.request_id, "method": request.method}
            self.emit({**message, "data": request.data})
            if self.answer is _NO_ANSWER:
                raise MethodNotFound(-32601, f"method not found: {request.method}")
            return self.answer

    async def until_done(self, session: Session) -> None:
        """Wait until the session ends or listening should stop; then note how it ended."""
        if _isatty(self.streams.stderr):
            _say(self.streams.stderr, f"connected to {self.url}; Ctrl-C to stop")
        ended = asyncio.ensure_future(session.wait_closed())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # Ctrl-C: close the session properly, then stop
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            self.stopping = True
        finally:
            ended.cancel()
            stopped.cancel()
        if not self.stopping:
            self.ended(session.close_code, session.close_reason)

    def ended(self, code: int | None, reason: str | None) -> None:
        """The server ended the session: normally (1000, 1001, 1005), or not."""
        detail = f"{code}{': ' + reason if reason else ''}"
        if code in _NORMAL_CLOSES:
            if _isatty(self.streams.stderr):
                _say(self.streams.stderr, f"the server closed the session ({detail})")
            self.status = EXIT_OK
        else:
            _say(self.streams.stderr, f"{_NAME}: the session ended abnormally ({detail})")
            self.status = EXIT_CLOSED

    def emit(self, message: dict[str, Any]) -> None:
        """Print one message as a JSON line; stop at `--count` or when stdout is gone."""
        if self.stopping:
            return
        try:
            _say(self.streams.stdout, _dumps(message))
        except BrokenPipeError:  # `listen ... | head -3`: the reader has had enough
            self.stop()
            return
        self.received += 1
        if self.args.count is not None and self.received >= self.args.count:
            self.stop()

    def stop(self) -> None:
        """Stop listening: the session is closed with 1000."""
        self.stopping = True
        self._stop.set()


async def _listen(args: argparse.Namespace, streams: Streams) -> int:
    answer = _NO_ANSWER if args.answer is None else _read_json(args.answer, streams.stdin, "--answer")
    url = _check_url(args.url)
    listener = _Listener(args, streams, url, answer)
    if not args.reconnect:
        async with _open(url, args) as session:
            listener.attach(session)
            await listener.until_done(session)
        return listener.status
    sessions = reconnecting(
        url,
        headers=args.header,
        ssl_context=_ssl_context(url, args),
        config=_client_config(),
        connect_timeout=_timeout_or_none(args.connect_timeout),
        backoff=Backoff(),
    )
    try:
        async with sessions:
            opened = 0
            async for session in sessions:
                opened += 1
                if opened > 1:
                    _say(streams.stderr, f"{_NAME}: reconnected to {url}")
                listener.attach(session)
                await listener.until_done(session)
                if listener.stopping:
                    break
    except (OSError, HandshakeError, LocalProtocolError) as exc:  # not worth retrying
        failure = _connection_failure(exc, url, args.connect_timeout)
        if failure is None:
            raise
        raise failure from None
    except SessionClosed:
        pass  # a close not worth retrying (1008, ...), reported when the session ended
    return listener.status
