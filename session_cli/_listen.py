"""`session-py listen`: print what the server sends, one JSON line per message."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import attrs

from session_core import (
    Config,
    Connection,
    ConnectionClosed,
    ErrorCode,
    HandshakeAccepted,
    HandshakeRejected,
    InvalidMessageReceived,
    NotificationReceived,
    RequestReceived,
    State,
    UpgradeRejected,
)
from session_core.driver import parse_url

from ._common import (
    _CLOSE_TIMEOUT,
    _NAME,
    _NORMAL_CLOSES,
    EXIT_CLOSED,
    EXIT_HANDSHAKE,
    EXIT_OK,
    EXIT_TIMEOUT,
    Streams,
    _check_url,
    _connection_failure,
    _dumps,
    _Failure,
    _host_port,
    _isatty,
    _read_json,
    _say,
    _ssl_context,
    _timeout_or_none,
)

# -- listen --------------------------------------------------------------------------------


@attrs.define
class _Listener:
    """Drives a client `Connection` over asyncio streams and prints what arrives."""

    args: argparse.Namespace
    streams: Streams
    url: str
    answer: Any
    conn: Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: bool = False
    stopping: bool = False
    received: int = 0
    status: int = EXIT_OK

    async def run(self, deadline: float | None) -> None:
        """Pump until the connection says the transport is done."""
        loop = asyncio.get_running_loop()
        conn = self.conn
        while True:
            for event in conn.events():
                self.handle(event)
            data = conn.data_to_send()
            if data:
                self.writer.write(data)
                with contextlib.suppress(OSError):
                    await self.writer.drain()
            if conn.should_close_transport:
                return
            if self.stopping and conn.state is State.OPEN:
                conn.close(1000, now=loop.time())
                continue
            timer = conn.get_timer()
            if not self.opened and deadline is not None:
                if loop.time() >= deadline:
                    raise _Failure(
                        EXIT_TIMEOUT,
                        f"no session with {_host_port(self.url)} within "
                        f"{self.args.connect_timeout:g} s (--connect-timeout)",
                    )
                timer = deadline if timer is None else min(timer, deadline)
            try:
                async with asyncio.timeout_at(timer):
                    chunk = await self.reader.read(65536)
            except TimeoutError:
                conn.handle_timer(loop.time())
                continue
            except OSError:
                chunk = b""
            if chunk:
                conn.receive_data(chunk, loop.time())
            else:
                conn.receive_eof()

    def handle(self, event: object) -> None:
        """Print one event, answer a request, or note the end."""
        if isinstance(event, NotificationReceived):
            self.emit({"type": "notification", "method": event.method, "data": event.data})
        elif isinstance(event, RequestReceived):
            if self.answer is _NO_ANSWER:
                message = f"method not found: {event.method}"
                self.conn.send_protocol_error(event.request_id, ErrorCode.METHOD_NOT_FOUND, message)
            else:
                self.conn.send_response(event.request_id, self.answer)
            self.emit({"type": "request", "id": event.request_id, "method": event.method, "data": event.data})
        elif isinstance(event, HandshakeAccepted):
            self.opened = True
            if _isatty(self.streams.stderr):
                _say(self.streams.stderr, f"connected to {self.url}; Ctrl-C to stop")
        elif isinstance(event, InvalidMessageReceived):
            _say(self.streams.stderr, f"{_NAME}: ignored an invalid message: {event.reason}")
        elif isinstance(event, UpgradeRejected):
            exc = HandshakeRejected(event.status_code, event.headers, event.body)
            failure = _connection_failure(exc, self.url, None)
            assert failure is not None
            raise failure
        elif isinstance(event, ConnectionClosed):
            self.closed(event)

    def closed(self, event: ConnectionClosed) -> None:
        """The end: a failed handshake, a normal close, or an abnormal one."""
        if not self.opened:
            raise _Failure(
                EXIT_HANDSHAKE, f"the WebSocket handshake with {_host_port(self.url)} failed: {event.reason}"
            )
        if self.stopping:
            return
        reason = f": {event.reason}" if event.reason else ""
        if event.code in _NORMAL_CLOSES:
            if _isatty(self.streams.stderr):
                _say(self.streams.stderr, f"the server closed the session ({event.code}{reason})")
        else:
            _say(self.streams.stderr, f"{_NAME}: the session ended abnormally ({event.code}{reason})")
            self.status = EXIT_CLOSED

    def emit(self, message: dict[str, Any]) -> None:
        """Print one message as a JSON line; stop at `--count` or when stdout is gone."""
        try:
            _say(self.streams.stdout, _dumps(message))
        except BrokenPipeError:  # `listen ... | head -3`: the reader has had enough
            self.stopping = True
            return
        self.received += 1
        if self.args.count is not None and self.received >= self.args.count:
            self.stopping = True


class _NoAnswer:
    pass


_NO_ANSWER: Any = _NoAnswer()


async def _listen(args: argparse.Namespace, streams: Streams) -> int:
    answer = _NO_ANSWER if args.answer is None else _read_json(args.answer, streams.stdin, "--answer")
    url = _check_url(args.url)
    target = parse_url(url)
    context = _ssl_context(url, args)
    loop = asyncio.get_running_loop()
    connect_timeout = _timeout_or_none(args.connect_timeout)
    deadline = None if connect_timeout is None else loop.time() + connect_timeout
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context is not None else None,
            )
    except OSError as exc:
        failure = _connection_failure(exc, url, args.connect_timeout)
        assert failure is not None
        raise failure from None
    conn = Connection.client(
        target.host_header,
        target.target,
        now=loop.time(),
        headers=args.header,
        config=Config(handshake_timeout=None, close_timeout=_CLOSE_TIMEOUT),
    )
    listener = _Listener(args, streams, url, answer, conn, reader, writer)
    try:
        try:
            await listener.run(deadline)
        except asyncio.CancelledError:  # Ctrl-C: close the session properly, then stop
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if not listener.opened:
                raise
            listener.stopping = True
            await listener.run(None)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return listener.status
