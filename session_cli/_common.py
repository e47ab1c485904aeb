"""What every command shares: exit statuses, input and output, URLs and options, progress."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import re
import shutil
import socket
import ssl
import sys
import time
from typing import Any, TextIO

import orjson

from session_core import (
    Config,
    HandshakeError,
    HandshakeRejected,
    LocalProtocolError,
)
from session_core.driver import parse_url

PROG = "session-py"
#: How the tool names itself in its messages.
_NAME = "session-py"
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
