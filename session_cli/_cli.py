"""The command line: `session-py call|notify|listen|serve` (also `python -m session_cli`).

A tool in the manner of `grpcurl` and `websocat`, for people and scripts:

- `call URL METHOD [JSON]` sends a request and prints its answer as JSON;
- `notify URL METHOD [JSON]` sends a notification;
- `listen URL` prints what the server sends, one JSON line per message;
- `serve [HOST:PORT]` runs a demo server (`echo`, `add`, `fail`, `sleep`, and a `tick`
  notification every second).

Results go to stdout, diagnostics to stderr, and each kind of failure has its own exit
status (`EXIT_*`, listed in `--help`). Every command is a plain `session_asyncio` client or
server: `listen` sees every message whatever its method through the catch-all handlers
(`Session.on_any_request`, `Session.on_any_notification`), and `listen --reconnect` is a
`session_asyncio.reconnecting()` loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from ._call import _call, _notify
from ._common import (
    _EXAMPLES,
    _EXIT_STATUS_HELP,
    _JSON_HELP,
    _MAIN_HELP,
    _NAME,
    _URL_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PROG,
    Streams,
    _count,
    _Failure,
    _header,
    _say,
    _seconds,
)
from ._listen import _listen
from ._serve import _serve, add_serve_options

__all__ = ["Streams", "build_parser", "main", "run"]


# -- the parser ----------------------------------------------------------------------------


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
            "8 otherwise); with --reconnect, across sessions until Ctrl-C or --count."
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
    listen.add_argument(
        "--reconnect",
        action="store_true",
        help="when the session ends or the server is away, connect again (backoff from 0.5-1 s "
        "up to 30 s) and go on listening; stops only at Ctrl-C, --count, or a failure not "
        "worth retrying (a 4xx refusal, close code 1008)",
    )
    _add_connection_options(listen)

    serve_parser = commands.add_parser(
        "serve",
        help="run your application (module:on_session) or a demo server, in workers",
        description=(
            "Run APP (module:attribute, an `async def on_session(session)`) the way uvicorn\n"
            "runs an app, in --workers processes sharing the port, each a node of the hub\n"
            "(--hub redis://...; session.hub reaches other sessions), on --loop asyncio,\n"
            "uvloop or trio, until Ctrl-C (or SIGTERM), which stops every worker.\n\n"
            "Without APP, run a demo server. Its methods:\n"
            "  echo    answers its data back\n"
            '  add     {"a": 2, "b": 3} gives 5 (numbers; anything else: error -32602)\n'
            '  fail    always answers the error response "boom"\n'
            "  sleep   N: answers null after N seconds (to try timeouts and cancellation)\n"
            'Each client gets the notification welcome ("hi") when it connects, then tick\n'
            "(1, 2, 3...) every --tick seconds. Connections are logged on stderr."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} serve 0.0.0.0:9000 --tick 0.5\n"
            f"  {PROG} serve myapp:on_session :8080 --workers 4 --hub redis://127.0.0.1:6379/0\n"
            f"  {PROG} serve myapp:on_session --loop trio\n\n" + _EXIT_STATUS_HELP
        ),
        formatter_class=_Formatter,
    )
    add_serve_options(serve_parser)
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
