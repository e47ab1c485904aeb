"""The command line: `session-py call|notify|listen|serve` (also `python -m session_cli`).

A tool in the manner of `grpcurl` and `websocat`, for people and scripts:

- `call URL METHOD [JSON]` sends a request and prints its answer as JSON;
- `notify URL METHOD [JSON]` sends a notification;
- `listen URL` prints what the server sends, one JSON line per message;
- `serve [HOST:PORT]` runs a demo server (`echo`, `add`, `fail`, `sleep`, and a `tick`
  notification every second).

Results go to stdout, diagnostics to stderr, and each kind of failure has its own exit
status (`EXIT_*`, listed in `--help`). `call` and `notify` use `session_asyncio.connect`;
`listen` drives a `session_core.Connection` itself, since it must see every message
whatever its method (a `Session` only delivers methods it has handlers for).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

import attrs
import orjson

from session_asyncio import Session, connect, serve
from session_core import (
    Config,
    Connection,
    ConnectionClosed,
    ErrorCode,
    HandshakeAccepted,
    HandshakeError,
    HandshakeRejected,
    InvalidMessageReceived,
    LocalProtocolError,
    Method,
    MethodError,
    NotificationReceived,
    ProtocolErrorResponse,
    RemoteError,
    RequestReceived,
    SessionClosed,
    State,
    UpgradeRejected,
    parse_url,
)

__all__ = ["Streams", "build_parser", "main", "run"]

PROG = "session-py"
DEFAULT_ADDRESS = ("127.0.0.1", 8765)

EXIT_OK = 0
"Success (and, for `listen` and `serve`, a stop by Ctrl-C or a normal close)."
EXIT_ERROR_RESPONSE = 1
"The peer answered with an error response (its error value is printed on stdout)."
EXIT_USAGE = 2
"A bad option or a missing argument (argparse's status)."
EXIT_BAD_JSON = 3
"The JSON argument (or stdin, or the file) is not valid JSON, or cannot be read."
EXIT_BAD_URL = 4
"The URL is not a usable `ws://` or `wss://` URL."
EXIT_CONNECT = 5
"No connection: refused, unknown host, unreachable, TLS failure; `serve` cannot listen."
EXIT_HANDSHAKE = 6
"The WebSocket handshake was rejected (an HTTP error) or failed: not a session server?"
EXIT_TIMEOUT = 7
"No answer within `--timeout`, or no session within `--connect-timeout`."
EXIT_CLOSED = 8
"The session ended before the answer, or (for `listen`) ended abnormally."
EXIT_INTERRUPTED = 130
"Ctrl-C during `call` or `notify`."

# The closes that end a session normally: normal, going away, and no status (session-rs).
_NORMAL_CLOSES = frozenset({1000, 1001, 1005})
# After sending our close frame, wait this long for the peer's (session-rs's server never
# closes the TCP connection, so the wait is not always short).
_CLOSE_TIMEOUT = 2.0

_EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}    success (listen, serve: stopped by Ctrl-C, or the server closed normally)
  {EXIT_ERROR_RESPONSE}    the peer answered with an error response: the error value is printed on
       stdout as JSON, a one-line summary on stderr
  {EXIT_USAGE}    usage error (unknown option, missing argument)
  {EXIT_BAD_JSON}    the JSON argument is not valid JSON (or cannot be read)
  {EXIT_BAD_URL}    the URL is not a ws:// or wss:// URL
  {EXIT_CONNECT}    cannot connect (refused, unknown host, TLS failure); serve: cannot listen
  {EXIT_HANDSHAKE}    the WebSocket handshake was rejected or failed (not a session server?)
  {EXIT_TIMEOUT}    timed out (--timeout, --connect-timeout)
  {EXIT_CLOSED}    the session closed before the answer (listen: closed abnormally)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C) during call or notify
"""

_MAIN_HELP = f"""\
Talk to session peers (the protocol of the Rust crate session-rs: typed requests,
responses and notifications over WebSocket) from the command line.
Run `{PROG} COMMAND --help` for the options of a command.
"""

_EXAMPLES = f"""\
examples:
  {PROG} serve &
  {PROG} call ws://127.0.0.1:8765/ add '{{"a": 2, "b": 3}}'
  echo '{{"x": [1, 2]}}' | {PROG} call 127.0.0.1:8765 echo -
  {PROG} notify ws://127.0.0.1:8765/ hello '"world"'
  {PROG} listen ws://127.0.0.1:8765/ --count 3

"""

_URL_HELP = "ws://HOST:PORT/PATH or wss://...; a URL without a scheme gets ws://"
_JSON_HELP = "the data, as JSON (default: null); - reads it from stdin, @FILE from FILE"


# -- input and output -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Streams:
    """Where the command line reads and writes: the process's streams, or test doubles."""

    stdin: TextIO
    "Where `-` reads the JSON argument from."
    stdout: TextIO
    "Results: answers, error values, messages received."
    stderr: TextIO
    "Diagnostics: errors, progress (on a terminal only), the server's log."

    @classmethod
    def system(cls) -> Streams:
        """The process's own `sys.stdin`, `sys.stdout` and `sys.stderr`."""
        return cls(sys.stdin, sys.stdout, sys.stderr)


class _Failure(Exception):
    """Ends a command with an exit status and a one-line message on stderr."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _say(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _dumps(value: Any, *, pretty: bool = False) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0).decode()


def _read_json(text: str | None, stdin: TextIO, what: str = "JSON argument") -> Any:
    """The JSON value of an argument: `None` is null, `-` reads stdin, `@FILE` a file."""
    if text is None:
        return None
    if text == "-":
        source, where = stdin.read(), f"{what} (from stdin)"
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as file:
                source = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise _Failure(EXIT_BAD_JSON, f"cannot read the {what} from {text[1:]!r}: {exc}") from None
        where = f"{what} (from {text[1:]})"
    else:
        source, where = text, what
    try:
        return orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        raise _Failure(EXIT_BAD_JSON, f"invalid {where}: {exc}") from None


def _check_url(url: str) -> str:
    """`url` with `ws://` added when it has no scheme; `_Failure` when it is not usable."""
    if "://" not in url:
        url = "ws://" + url
    try:
        parse_url(url)
    except LocalProtocolError as exc:
        hint = ""
        if url.startswith(("http://", "https://")):
            hint = " (use ws:// for http:// and wss:// for https://)"
        raise _Failure(EXIT_BAD_URL, f"{exc}{hint}") from None
    return url


# RFC 9110 section 5.6.2: a header name is a token; a value holds no control characters.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def _header(text: str) -> tuple[str, str]:
    """An argparse type: `Name: value`."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"expected 'Name: value' (an HTTP header), got {text!r}")
    return name, value


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return value


def _count(text: str) -> int:
    """An argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _address(text: str) -> tuple[str | None, int]:
    """An argparse type: `HOST:PORT`, `:PORT` (every interface), `PORT` or `HOST`."""
    if text.isdigit():
        host: str | None = DEFAULT_ADDRESS[0]
        port_text = text
    elif text.startswith("[") and "]" in text:  # [::1]:8765
        inside, _, rest = text[1:].partition("]")
        host = inside
        port_text = rest[1:] if rest.startswith(":") else (rest or str(DEFAULT_ADDRESS[1]))
        if rest and not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    elif text.count(":") == 1:
        host_text, _, port_text = text.partition(":")
        host = host_text or None
    elif ":" in text:
        raise argparse.ArgumentTypeError(f"write an IPv6 address in brackets: [{text}]:PORT")
    else:
        host, port_text = text, str(DEFAULT_ADDRESS[1])
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port in {text!r}")
    return host, int(port_text)


def _ssl_context(url: str, args: argparse.Namespace) -> ssl.SSLContext | None:
    if not url.startswith("wss://"):
        return None
    try:
        context = ssl.create_default_context(cafile=args.cacert)
    except (OSError, ssl.SSLError) as exc:
        raise _Failure(EXIT_CONNECT, f"cannot load the CA certificates {args.cacert!r}: {exc}") from None
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _host_port(url: str) -> str:
    return parse_url(url).host_header


def _connection_failure(exc: BaseException, url: str, connect_timeout: float | None) -> _Failure | None:
    """The failure to report for an exception raised while opening a session, if any."""
    where = _host_port(url)
    if isinstance(exc, HandshakeRejected):
        body = exc.body.decode("utf-8", "replace").strip().splitlines()
        said = f": {body[0][:100]}" if body else ""
        hint = " (not a WebSocket server?)" if exc.status_code < 400 else ""
        return _Failure(
            EXIT_HANDSHAKE,
            f"{where} refused the WebSocket upgrade with HTTP {exc.status_code}{said}{hint}",
        )
    if isinstance(exc, HandshakeError):
        return _Failure(EXIT_HANDSHAKE, f"the WebSocket handshake with {where} failed: {exc}")
    if isinstance(exc, TimeoutError):  # before OSError: it is one
        return _Failure(
            EXIT_TIMEOUT, f"no session with {where} within {connect_timeout:g} s (--connect-timeout)"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Failure(
            EXIT_CONNECT, f"TLS with {where} failed: {exc.verify_message} (see --cacert, --insecure)"
        )
    if isinstance(exc, ssl.SSLError):
        return _Failure(EXIT_CONNECT, f"TLS with {where} failed: {exc.reason or exc}")
    if isinstance(exc, socket.gaierror):
        return _Failure(EXIT_CONNECT, f"cannot resolve {parse_url(url).host}: {exc.strerror or exc}")
    if isinstance(exc, OSError):
        # asyncio words a refusal "Connect call failed (address)": say what the errno says.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return _Failure(EXIT_CONNECT, f"cannot connect to {where}: {reason}")
    return None


def _timeout_or_none(value: float) -> float | None:
    return value or None


def _client_config() -> Config:
    return Config(close_timeout=_CLOSE_TIMEOUT)


# -- progress ------------------------------------------------------------------------------


class Progress:
    """A status line with a spinner on a terminal, for a wait longer than `delay` seconds.

    Shown only when the stream is a terminal (never in a pipe or a file), rewritten in
    place, and erased by `stop()`. Use it as an async context manager; set `status` as the
    wait goes on.
    """

    FRAMES = "-\\|/"

    def __init__(
        self, stream: TextIO, status: str = "", *, delay: float = 0.5, interval: float = 0.1
    ) -> None:
        self.status = status
        "What the user waits for."
        self._stream = stream
        self._delay = delay
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._shown = False

    async def __aenter__(self) -> Progress:
        if _isatty(self._stream):
            self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop and erase the line (before writing anything else to the terminal)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._shown:
            self._shown = False
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    async def _run(self) -> None:
        started = time.monotonic()
        await asyncio.sleep(self._delay)
        width = max(20, shutil.get_terminal_size().columns - 1)
        for frame in itertools.cycle(self.FRAMES):
            line = f"{frame} {self.status} ({time.monotonic() - started:.1f} s)"
            self._stream.write("\r" + line[:width] + "\x1b[K")
            self._stream.flush()
            self._shown = True
            await asyncio.sleep(self._interval)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


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


# -- the parser ----------------------------------------------------------------------------

_NAME = "session-py"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the layout of descriptions and epilogs; shows defaults where given."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-H",
        "--header",
        metavar="'NAME: VALUE'",
        type=_header,
        action="append",
        default=[],
        help="an extra header for the upgrade request (repeatable), e.g. 'Authorization: Bearer x'",
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=10.0,
        help="limit on connecting and the WebSocket handshake (default: 10; 0: none)",
    )
    parser.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM) for wss://")
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="wss://: do not verify the server's certificate"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `session-py`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_MAIN_HELP,
        epilog=_EXAMPLES + _EXIT_STATUS_HELP,
        formatter_class=_Formatter,
    )
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    call = commands.add_parser(
        "call",
        help="send a request and print its answer as JSON",
        description=(
            "Send a request and print its answer on stdout as JSON.\n\n"
            "An error response prints its error value on stdout too (a protocol error as\n"
            '{"code": ..., "message": ...}), with a summary on stderr, and exits with 1.\n'
            "While the answer takes more than half a second and stderr is a terminal, a\n"
            "progress line shows the wait."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} call ws://127.0.0.1:8765/ echo '{{\"x\": [1, 2, 3]}}'\n"
            f"  {PROG} call 127.0.0.1:8765 sleep 5 --timeout 1      # exit status 7\n"
            f"  {PROG} call wss://example.com/api status -H 'Authorization: Bearer t0k3n'\n\n"
            + _EXIT_STATUS_HELP
        ),
        formatter_class=_Formatter,
    )
    call.add_argument("url", metavar="URL", help=_URL_HELP)
    call.add_argument("method", metavar="METHOD", help="the method to call")
    call.add_argument("json", metavar="JSON", nargs="?", help=_JSON_HELP)
    call.add_argument(
        "-t",
        "--timeout",
        metavar="SECONDS",
        type=_seconds,
        default=10.0,
        help="wait at most this long for the answer, then cancel the request (default: 10; 0: "
        "forever). session-rs never answers a method it does not know: keep a timeout",
    )
    call.add_argument("-p", "--pretty", action="store_true", help="indent the JSON output")
    _add_connection_options(call)

    notify = commands.add_parser(
        "notify",
        help="send a notification",
        description="Send a notification (never answered), then close the session.",
        epilog=f'example:\n  {PROG} notify ws://127.0.0.1:8765/ log \'{{"level": "info"}}\'\n\n'
        + _EXIT_STATUS_HELP,
        formatter_class=_Formatter,
    )
    notify.add_argument("url", metavar="URL", help=_URL_HELP)
    notify.add_argument("method", metavar="METHOD", help="the notification's method")
    notify.add_argument("json", metavar="JSON", nargs="?", help=_JSON_HELP)
    _add_connection_options(notify)

    listen = commands.add_parser(
        "listen",
        help="print the notifications and requests the server sends, one JSON line each",
        description=(
            "Print each notification and request the server sends, as it arrives, on stdout,\n"
            "one JSON line each, as on the wire:\n"
            '  {"type":"notification","method":"tick","data":1}\n'
            '  {"type":"request","id":1,"method":"ask","data":null}\n'
            "Requests are answered with the error -32601 (method not found), or with the\n"
            "result given by --answer. Runs until Ctrl-C (exit status 0), until --count\n"
            "messages arrived, or until the server closes the session (0 for a normal close,\n"
            "8 otherwise)."
        ),
        epilog=f"example:\n  {PROG} listen ws://127.0.0.1:8765/ | jq .data\n\n" + _EXIT_STATUS_HELP,
        formatter_class=_Formatter,
    )
    listen.add_argument("url", metavar="URL", help=_URL_HELP)
    listen.add_argument(
        "--answer",
        metavar="JSON",
        help="answer every request with this result instead of -32601; - reads it from stdin",
    )
    listen.add_argument("-n", "--count", metavar="N", type=_count, help="stop (and close) after N messages")
    _add_connection_options(listen)

    serve_parser = commands.add_parser(
        "serve",
        help="run a demo server (echo, add, fail, sleep, tick)",
        description=(
            "Run a demo server until Ctrl-C (or SIGTERM). Its methods:\n"
            "  echo    answers its data back\n"
            '  add     {"a": 2, "b": 3} gives 5 (numbers; anything else: error -32602)\n'
            '  fail    always answers the error response "boom"\n'
            "  sleep   N: answers null after N seconds (to try timeouts and cancellation)\n"
            'Each client gets the notification welcome ("hi") when it connects, then tick\n'
            "(1, 2, 3...) every --tick seconds. Connections are logged on stderr."
        ),
        epilog=f"example:\n  {PROG} serve 0.0.0.0:9000 --tick 0.5\n\n" + _EXIT_STATUS_HELP,
        formatter_class=_Formatter,
    )
    serve_parser.add_argument(
        "address",
        metavar="HOST:PORT",
        nargs="?",
        type=_address,
        default=DEFAULT_ADDRESS,
        help="where to listen (default: 127.0.0.1:8765; :PORT listens on every interface; "
        "port 0 picks a free one)",
    )
    serve_parser.add_argument(
        "--tick",
        metavar="SECONDS",
        type=_seconds,
        default=1.0,
        help="seconds between tick notifications (default: 1; 0: none)",
    )
    return parser


# -- entry points --------------------------------------------------------------------------

_COMMANDS = {"call": _call, "notify": _notify, "listen": _listen, "serve": _serve}


async def run(args: argparse.Namespace, streams: Streams | None = None) -> int:
    """Run the parsed command `args` on the running loop; return the exit status."""
    streams = streams or Streams.system()
    try:
        return await _COMMANDS[args.command](args, streams)
    except _Failure as failure:
        _say(streams.stderr, f"{_NAME}: {failure.message}")
        return failure.status


def main(argv: Sequence[str] | None = None, streams: Streams | None = None) -> int:
    """The command line: parse `argv` (default `sys.argv[1:]`), run, return the exit status.

    A usage error exits at once (`SystemExit` with status 2), as argparse does.
    """
    streams = streams or Streams.system()
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args, streams))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`... | head`): nothing more to say
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the pipe gone that would print a traceback.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
