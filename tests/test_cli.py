"""The command line, `session-py` (`python -m session_cli`): every command and every exit status.

The demo server (`serve`) runs in a subprocess, as a user runs it; most commands run in
this process through `main()` (quick), a few as real processes (the entry point, Ctrl-C).
Servers that misbehave on purpose (rejecting, silent, closing) are built in-process, and
the command runs on the same loop through `run()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme

import session_asyncio
from session_cli import Streams, _common, _serve, build_parser, main, run
from session_core import Accept, Method, MethodNotFound, Reject, RemoteError, UpgradeRequested
from tests.interop.rawpeer import CLOSE, WELCOME, FakeServer, RawPeer, session_rs_101

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    """The environment of a child process that imports this checkout."""
    variables = dict(os.environ)
    variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), variables.get("PYTHONPATH")]))
    return variables


def command(*argv: str) -> list[str]:
    """The argv of `python -m session_cli ARGV...`."""
    return [sys.executable, "-m", "session_cli", *argv]


class DemoServer:
    """`session-py serve` in a subprocess, on a free port; its log collected."""

    def __init__(self, *options: str) -> None:
        self.process = subprocess.Popen(
            command("serve", "127.0.0.1:0", *options),
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=ROOT,
        )
        self.log: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_for("listening on ws://")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.log.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout: float = 10.0) -> str:
        """The `count`-th log line containing `text`, once it is there."""
        with self._changed:
            found: list[str] = []

            def seen() -> bool:
                found[:] = [line for line in self.log if text in line]
                return len(found) >= count

            assert self._changed.wait_for(seen, timeout), f"no {text!r} in the log: {self.log}"
            return found[count - 1]

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Stop it with `sig`; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            status = self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(5)
            assert self.process.stderr is not None
            self.process.stderr.close()
        return status


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    """The demo server, ticking every 50 ms; Ctrl-C must stop it cleanly."""
    server = DemoServer("--tick", "0.05")
    try:
        yield server
    finally:
        assert server.stop() == 0
        assert server.log[-1].endswith("stopped"), server.log


@attrs.frozen
class Result:
    """What a command did: its exit status and its output."""

    status: int
    out: str
    err: str


class TerminalIO(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def streams(stdin: str = "", *, tty: bool = False) -> Streams:
    """Streams in memory."""
    return Streams(io.StringIO(stdin), io.StringIO(), TerminalIO() if tty else io.StringIO())


def result(status: int, used: Streams) -> Result:
    """The `Result` of a command that wrote to `used`."""
    assert isinstance(used.stdout, io.StringIO)
    assert isinstance(used.stderr, io.StringIO)
    return Result(status, used.stdout.getvalue(), used.stderr.getvalue())


def cli(*argv: str, stdin: str = "", tty: bool = False) -> Result:
    """Run the command line in this process, with its own loop, as `main()` does."""
    used = streams(stdin, tty=tty)
    return result(main(list(argv), used), used)


async def acli(*argv: str, stdin: str = "") -> Result:
    """Run the command line on the running loop (next to an in-process server)."""
    used = streams(stdin)
    return result(await run(build_parser().parse_args(list(argv)), used), used)


def the_error(done: Result) -> str:
    """The one-line error message on stderr."""
    lines = done.err.splitlines()
    assert len(lines) == 1, done.err
    assert lines[0].startswith("session-py: "), lines[0]
    return lines[0]


@contextlib.asynccontextmanager
async def session_server(
    on_session: Callable[[session_asyncio.Session], Awaitable[None]], **options: Any
) -> AsyncIterator[str]:
    """A `session_asyncio` server on a free port; yields its URL."""
    async with await session_asyncio.serve(on_session, "127.0.0.1", 0, **options) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A plain TCP server running `handle` for each connection; yields a ws:// URL to it."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where nothing listens (bound, so that nobody else takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["call", "--help"], ["listen", "--help"]])
def test_help_documents_every_exit_status(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "exit status:" in text
    for status in (0, 1, 2, 3, 4, 5, 6, 7, 8, 130):
        assert f"\n  {status} " in text, status


def test_each_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for name, expected in [
        ("call", "URL METHOD [JSON]"),
        ("notify", "URL METHOD [JSON]"),
        ("listen", "--answer JSON"),
        ("serve", "[HOST:PORT]"),
    ]:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert expected in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "ws://127.0.0.1:1/"],  # no METHOD
        ["call", "ws://127.0.0.1:1/", "echo", "--timeout", "-1"],
        ["call", "ws://127.0.0.1:1/", "echo", "-H", "no colon"],
        ["call", "ws://127.0.0.1:1/", "echo", "-H", "Bad Name: v"],
        ["call", "ws://127.0.0.1:1/", "echo", "-H", "Name: a\r\nInjected: b"],
        ["listen", "ws://127.0.0.1:1/", "--count", "0"],
        ["serve", "127.0.0.1:99999"],
        ["serve", "::1:80"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == _common.EXIT_USAGE == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        [str(Path(sys.executable).with_name("session-py"))],
        [sys.executable, "-m", "session_cli"],
        [sys.executable, "-m", "session_asyncio"],
    ],
    ids=["console-script", "python-m-session_cli", "python-m-session_asyncio"],
)
def test_every_entry_point_runs_the_same_command_line(command: list[str]) -> None:
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: session-py [-h] COMMAND")
    assert all(name in done.stdout for name in ("call", "notify", "listen", "serve"))


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        (":9000", (None, 9000)),
        ("9000", ("127.0.0.1", 9000)),
        ("example.com", ("example.com", 8765)),
        ("[::1]:9000", ("::1", 9000)),
        ("[::1]", ("::1", 8765)),
    ],
)
def test_serve_addresses(text: str, address: tuple[str | None, int]) -> None:
    assert build_parser().parse_args(["serve", text]).address == address


# -- call ----------------------------------------------------------------------------------


def test_call_prints_the_result_as_json_in_a_real_process(demo: DemoServer) -> None:
    done = subprocess.run(
        command("call", demo.url, "echo", '{"x": [1, 2, 3], "s": "\u00e9"}'),
        capture_output=True,
        text=True,
        env=env(),
        timeout=20,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, '{"x":[1,2,3],"s":"\u00e9"}\n', "")


def test_call_add(demo: DemoServer) -> None:
    assert cli("call", demo.url, "add", '{"a": 2, "b": 3}') == Result(0, "5\n", "")
    assert cli("call", demo.url, "add", '{"a": 2, "b": 3.5}').out == "5.5\n"


def test_call_without_json_sends_null_and_a_url_without_scheme_is_ws(demo: DemoServer) -> None:
    assert cli("call", f"127.0.0.1:{demo.port}", "echo") == Result(0, "null\n", "")


def test_call_pretty(demo: DemoServer) -> None:
    assert cli("call", demo.url, "echo", '{"a": [1]}', "--pretty").out == '{\n  "a": [\n    1\n  ]\n}\n'


def test_call_reads_json_from_stdin_and_files(demo: DemoServer, tmp_path: Path) -> None:
    assert cli("call", demo.url, "echo", "-", stdin='{"from": "stdin"}\n').out == '{"from":"stdin"}\n'
    data = tmp_path / "data.json"
    data.write_text('[1, "file"]', encoding="utf-8")
    assert cli("call", demo.url, "echo", f"@{data}").out == '[1,"file"]\n'


def test_call_error_response_exits_1_with_the_error_on_stdout(demo: DemoServer) -> None:
    done = cli("call", demo.url, "fail")
    assert (done.status, done.out) == (_common.EXIT_ERROR_RESPONSE, '"boom"\n')
    assert the_error(done) == "session-py: fail answered with an error response"


def test_call_protocol_errors_exit_1_with_code_and_message(demo: DemoServer) -> None:
    done = cli("call", demo.url, "nope")
    assert (done.status, done.out) == (1, '{"code":-32601,"message":"method not found: nope"}\n')
    assert the_error(done) == "session-py: nope: method not found: nope (-32601)"
    done = cli("call", demo.url, "add", '{"a": "2", "b": 3}')
    assert done.status == 1
    assert done.out.startswith('{"code":-32602,"message":"invalid request data for add')
    assert "(-32602)" in the_error(done)


def test_call_timeout_exits_7_and_cancels_the_request(demo: DemoServer) -> None:
    started = time.monotonic()
    done = cli("call", demo.url, "sleep", "5", "--timeout", "0.2")
    assert time.monotonic() - started < 3
    assert (done.status, done.out) == (_common.EXIT_TIMEOUT, "")
    assert "no answer to sleep within 0.2 s (--timeout)" in the_error(done)


def test_progress_line_only_on_a_terminal(demo: DemoServer) -> None:
    on_terminal = cli("call", demo.url, "sleep", "0.8", tty=True)
    assert (on_terminal.status, on_terminal.out) == (0, "null\n")
    assert on_terminal.err.startswith("\r- ")  # after half a second, rewritten in place
    assert re.search(r"\r[-\\|/] waiting for the answer to sleep \(0\.\d s\)\x1b\[K", on_terminal.err)
    assert on_terminal.err.endswith("\r\x1b[K")  # erased before the result is printed
    in_a_pipe = cli("call", demo.url, "sleep", "0.6")
    assert in_a_pipe == Result(0, "null\n", "")


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["echo", "{"], "", "invalid JSON argument: unexpected end of data"),
        (["echo", "-"], "", "invalid JSON argument (from stdin): "),
        (["echo", "NaN"], "", "invalid JSON argument: unexpected character"),
        (["echo", "@/nonexistent/data.json"], "", "cannot read the JSON argument from '/nonexistent/"),
    ],
)
def test_invalid_json_exits_3(argv: list[str], stdin: str, message: str) -> None:
    done = cli("call", "ws://127.0.0.1:1/", *argv, stdin=stdin)  # nothing is dialled
    assert (done.status, done.out) == (_common.EXIT_BAD_JSON, "")
    assert message in the_error(done)


def test_invalid_answer_json_exits_3() -> None:
    done = cli("listen", "ws://127.0.0.1:1/", "--answer", "{")
    assert done.status == 3
    assert "invalid --answer" in the_error(done)


@pytest.mark.parametrize("name", ["call", "notify", "listen"])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8765/", "(use ws:// for http:// and wss:// for https://)"),
        ("ws://", "no host in URL"),
        ("ws://127.0.0.1:99999/", "invalid port in URL"),
        ("ftp://example.com/", "not a ws:// or wss:// URL"),
    ],
)
def test_bad_url_exits_4(name: str, url: str, message: str) -> None:
    argv = [name, url] if name == "listen" else [name, url, "echo"]
    done = cli(*argv)
    assert done.status == _common.EXIT_BAD_URL
    assert message in the_error(done)


@pytest.mark.parametrize("name", ["call", "notify", "listen"])
def test_refused_connection_exits_5(name: str, closed_port: int) -> None:
    url = f"ws://127.0.0.1:{closed_port}/"
    done = cli(*([name, url] if name == "listen" else [name, url, "echo"]))
    assert done.status == _common.EXIT_CONNECT
    assert the_error(done).endswith(f"cannot connect to 127.0.0.1:{closed_port}: Connection refused")


def test_unknown_host_is_a_connection_failure() -> None:
    gaierror = socket.gaierror(-2, "Name or service not known")
    failure = _common._connection_failure(gaierror, "ws://nohost/", 10)
    assert failure is not None
    assert (failure.status, failure.message) == (5, "cannot resolve nohost: Name or service not known")


@pytest.mark.parametrize("name", ["call", "listen"])
def test_rejected_handshake_exits_6_and_headers_are_sent(name: str) -> None:
    def check_token(request: UpgradeRequested, address: Any) -> Accept | Reject:
        if (b"x-token", b"s3cret") in request.headers:
            return Accept()
        return Reject(status_code=403, body=b"go away\n")

    async def on_session(session: session_asyncio.Session) -> None:
        _serve._serve_methods(session)
        await session.notify("hello", 1)

    async def scenario() -> tuple[Result, Result]:
        async with session_server(on_session, on_upgrade=check_token) as url:
            argv = [name, url, "--count", "1"] if name == "listen" else [name, url, "echo", "7"]
            rejected = await acli(*argv)
            accepted = await acli(*argv, "-H", "X-Token: s3cret")
        return rejected, accepted

    rejected, accepted = asyncio.run(scenario())
    assert rejected.status == _common.EXIT_HANDSHAKE
    assert the_error(rejected).endswith("refused the WebSocket upgrade with HTTP 403: go away")
    if name == "listen":
        assert accepted == Result(0, '{"type":"notification","method":"hello","data":1}\n', "")
    else:
        assert accepted == Result(0, "7\n", "")


@pytest.mark.parametrize("name", ["call", "notify", "listen"])
def test_not_a_websocket_server_exits_6(name: str) -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n")
        await writer.drain()

    async def scenario() -> Result:
        async with raw_server(http) as url:
            return await acli(*([name, url] if name == "listen" else [name, url, "echo"]))

    done = asyncio.run(scenario())
    assert done.status == _common.EXIT_HANDSHAKE
    assert the_error(done).endswith("with HTTP 200: hello (not a WebSocket server?)")


@pytest.mark.parametrize("name", ["call", "listen"])
def test_connection_dropped_during_the_handshake_exits_6(name: str) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async def scenario() -> Result:
        async with raw_server(drop) as url:
            return await acli(*([name, url] if name == "listen" else [name, url, "echo"]))

    done = asyncio.run(scenario())
    assert done.status == _common.EXIT_HANDSHAKE
    assert "the WebSocket handshake with 127.0.0.1:" in the_error(done)


@pytest.mark.parametrize("name", ["call", "listen"])
def test_connect_timeout_exits_7(name: str) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    async def scenario() -> Result:
        async with raw_server(silent) as url:
            argv = [name, url] if name == "listen" else [name, url, "echo"]
            return await acli(*argv, "--connect-timeout", "0.2")

    done = asyncio.run(scenario())
    assert done.status == _common.EXIT_TIMEOUT
    assert "within 0.2 s (--connect-timeout)" in the_error(done)


def test_session_closed_before_the_answer_exits_8() -> None:
    bye: Method[Any, None, None] = Method("bye", request=Any, response=None, error=None)

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_request(bye)
        async def _bye(_: Any) -> None:
            await session.close(4000, "bye now")

    async def scenario() -> Result:
        async with session_server(on_session) as url:
            return await acli("call", url, "bye")

    done = asyncio.run(scenario())
    assert (done.status, done.out) == (_common.EXIT_CLOSED, "")
    assert "the session ended before the answer to bye" in the_error(done)
    assert "4000" in done.err


def test_call_and_listen_over_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def on_session(session: session_asyncio.Session) -> None:
        _serve._serve_methods(session)
        await session.notify("hello", 0)

    async def scenario() -> list[Result]:
        async with session_server(on_session, ssl_context=server_context) as url:
            secure = url.replace("ws://", "wss://")
            return [
                await acli("call", secure, "echo", "1", "--cacert", str(ca_file)),
                await acli("call", secure, "echo", "2", "--insecure"),
                await acli("listen", secure, "--count", "1", "--cacert", str(ca_file)),
                await acli("call", secure, "echo", "3"),
            ]

    trusted, insecure, listened, untrusted = asyncio.run(scenario())
    assert trusted == Result(0, "1\n", "")
    assert insecure == Result(0, "2\n", "")
    assert listened == Result(0, '{"type":"notification","method":"hello","data":0}\n', "")
    assert untrusted.status == _common.EXIT_CONNECT
    assert "TLS with 127.0.0.1:" in the_error(untrusted)
    assert the_error(untrusted).endswith("(see --cacert, --insecure)")


def test_ctrl_c_during_call_exits_130(demo: DemoServer) -> None:
    connected = len([line for line in demo.log if "connected (path" in line])
    process = subprocess.Popen(
        command("call", demo.url, "sleep", "10"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
    )
    try:
        demo.wait_for("connected (path", count=connected + 1)
        time.sleep(0.1)  # the request is on its way
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out, err) == (_common.EXIT_INTERRUPTED, b"", b"")


# -- notify --------------------------------------------------------------------------------


def test_notify_sends_the_notification() -> None:
    note: Method[Any, None, None] = Method("note", request=Any, response=None, error=None)

    async def scenario() -> tuple[Result, list[Any]]:
        received: list[Any] = []
        done = asyncio.Event()

        async def on_session(session: session_asyncio.Session) -> None:
            @session.on_notification(note)
            async def _note(data: Any) -> None:
                received.append(data)
                done.set()

        async with session_server(on_session) as url:
            outcome = await acli("notify", url, "note", '{"n": 1}')
            await asyncio.wait_for(done.wait(), 5)
        return outcome, received

    outcome, received = asyncio.run(scenario())
    assert outcome == Result(0, "", "")
    assert received == [{"n": 1}]


def test_notify_the_demo_server(demo: DemoServer) -> None:
    assert cli("notify", demo.url, "anything", "[1]") == Result(0, "", "")


# -- listen --------------------------------------------------------------------------------


def test_listen_prints_notifications_as_json_lines(demo: DemoServer) -> None:
    done = cli("listen", demo.url, "--count", "3")
    assert done == Result(
        0,
        '{"type":"notification","method":"welcome","data":"hi"}\n'
        '{"type":"notification","method":"tick","data":1}\n'
        '{"type":"notification","method":"tick","data":2}\n',
        "",
    )


@pytest.mark.parametrize(
    ("options", "close_code", "status"),
    [([], 1000, 0), (["--answer", '{"ok": true}'], 1000, 0), ([], 4000, 8), ([], 1001, 0)],
)
def test_listen_prints_and_answers_requests(options: list[str], close_code: int, status: int) -> None:
    answers: list[Any] = []

    async def on_session(session: session_asyncio.Session) -> None:
        await session.notify("note", [1])
        try:
            answers.append(await session.request("ask", {"q": 1}, timeout=5))
        except RemoteError as exc:
            answers.append(exc)
        await session.close(close_code, "over")

    async def scenario() -> Result:
        async with session_server(on_session) as url:
            return await acli("listen", url, *options)

    done = asyncio.run(scenario())
    assert done.status == status
    assert done.out == (
        '{"type":"notification","method":"note","data":[1]}\n'
        '{"type":"request","id":1,"method":"ask","data":{"q":1}}\n'
    )
    if options:
        assert answers == [{"ok": True}]
    else:
        assert isinstance(answers[0], MethodNotFound)
    if status:
        assert the_error(done) == f"session-py: the session ended abnormally ({close_code}: over)"
    else:
        assert done.err == ""


def test_listen_reconnect_goes_on_across_a_server_restart_on_the_same_port() -> None:
    # The first server greets, then shuts down (1001, retried); a second one comes up on
    # the same port a little later and greets too: `--reconnect` hears both.
    async def greet(number: int) -> Callable[[session_asyncio.Session], Awaitable[None]]:
        async def on_session(session: session_asyncio.Session) -> None:
            await session.notify("hello", number)

        return on_session

    async def scenario() -> tuple[Result, str]:
        first = await session_asyncio.serve(await greet(1), "127.0.0.1", 0)
        port = first.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"
        listening = asyncio.ensure_future(acli("listen", url, "--reconnect", "--count", "2"))
        await asyncio.sleep(0.3)
        first.close()
        await first.wait_closed()
        await asyncio.sleep(0.3)  # the client finds nobody there, and retries
        async with await session_asyncio.serve(await greet(2), "127.0.0.1", port):
            return await asyncio.wait_for(listening, 15), url

    reconnected, url = asyncio.run(scenario())
    assert reconnected.status == 0
    assert reconnected.out == (
        '{"type":"notification","method":"hello","data":1}\n'
        '{"type":"notification","method":"hello","data":2}\n'
    )
    assert reconnected.err.splitlines() == [f"session-py: reconnected to {url}"]


def test_listen_stops_when_stdout_is_gone(demo: DemoServer) -> None:
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    used = Streams(io.StringIO(), Gone(), io.StringIO())
    assert main(["listen", demo.url], used) == 0


def test_listen_until_ctrl_c_in_a_real_process(demo: DemoServer) -> None:
    disconnected = len([line for line in demo.log if "disconnected (1000)" in line])
    process = subprocess.Popen(
        command("listen", demo.url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env()
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b'{"type":"notification","method":"welcome","data":"hi"}\n'
        assert process.stdout.readline().startswith(b'{"type":"notification","method":"tick","data":')
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, err) == (0, b"")
    assert all(line.startswith(b'{"type":"notification"') for line in out.splitlines())
    demo.wait_for("disconnected (1000)", count=disconnected + 1)  # closed properly


# -- with a session-rs server (its bytes replayed by tests/interop/rawpeer.py) ---------------

#: A session-rs server never closes the TCP connection: we must, and soon.
PROMPT = 1.5


def accept_as_session_rs(peer: RawPeer) -> None:
    """Answer the upgrade with session-rs's 101, alone, then greet as its example does."""
    head = peer.read_head()
    peer.sock.sendall(session_rs_101(head.headers["sec-websocket-key"]))
    time.sleep(0.02)  # its server never sends a frame together with the 101
    peer.send_text(WELCOME)


def test_listen_to_a_session_rs_server_that_closes_without_a_code() -> None:
    def script(peer: RawPeer) -> float:
        accept_as_session_rs(peer)
        peer.write_frame(CLOSE)  # no code: 1005, a normal end
        assert peer.read_until(CLOSE).payload == b""  # our answer, without a code too
        with contextlib.suppress(OSError):
            peer.write_frame(CLOSE)  # session-rs answers every close frame
        return peer.expect_eof(within=PROMPT)

    with FakeServer(script) as server:
        done = cli("listen", server.url)
    assert done == Result(0, WELCOME + "\n", "")
    assert server.result < PROMPT


def test_listen_count_leaves_a_session_rs_server_promptly() -> None:
    def script(peer: RawPeer) -> float:
        accept_as_session_rs(peer)
        assert peer.read_until(CLOSE).masked  # our close (--count reached)
        peer.write_frame(CLOSE)  # its answer, without a code; it never closes the TCP connection
        return peer.expect_eof(within=PROMPT)

    started = time.monotonic()
    with FakeServer(script) as server:
        done = cli("listen", server.url, "--count", "1")
    assert done == Result(0, WELCOME + "\n", "")
    assert time.monotonic() - started < PROMPT


def test_call_a_method_session_rs_does_not_know_times_out() -> None:
    def script(peer: RawPeer) -> None:
        accept_as_session_rs(peer)
        assert peer.read_text() == '{"type":"request","id":1,"method":"nope","data":null}'
        # session-rs sends nothing back, ever: it does not know the method.
        assert peer.read_text() == '{"type":"notification","method":"$/cancel","data":{"id":1}}'
        peer.read_until(CLOSE)
        with contextlib.suppress(OSError):
            peer.write_frame(CLOSE)

    with FakeServer(script) as server:
        done = cli("call", server.url, "nope", "--timeout", "0.3")
    assert (done.status, done.out) == (_common.EXIT_TIMEOUT, "")
    assert "no answer to nope within 0.3 s" in the_error(done)


# -- serve ---------------------------------------------------------------------------------


def test_serve_logs_connections_and_stops_on_sigterm() -> None:
    server = DemoServer("--tick", "0")
    try:
        assert cli("call", server.url, "add", '{"a": 1, "b": 2}').out == "3\n"
        server.wait_for("disconnected (1000)")
    finally:
        status = server.stop(signal.SIGTERM)
    assert status == 0
    log = "\n".join(server.log)
    assert "methods: echo, add, fail, sleep; notifications: welcome, no tick" in log
    assert re.search(r"^\d\d:\d\d:\d\d 127\.0\.0\.1:\d+ connected \(path /\)$", log, re.MULTILINE)
    assert server.log[-1].endswith("stopped")


def test_serve_cannot_listen_exits_5() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = cli("serve", f"127.0.0.1:{port}")
    assert done.status == _common.EXIT_CONNECT
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in the_error(done)


# -- serve: an application, workers, a hub -------------------------------------------------

from benchmarks.hub.redis import RedisServer  # noqa: E402
from tests.hub.apps import BROADCAST, JOIN, Client  # noqa: E402
from tests.hub.conftest import redis_server  # noqa: E402, F401


class AppServer(DemoServer):
    """`session-py serve APP ...` in a subprocess (its workers' logs collected too)."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            command("serve", *argv), stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT
        )
        self.log = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self.wait_for("listening on ws://").split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))


@pytest.mark.parametrize(
    ("argv", "app", "address"),
    [
        (["myapp:on_session"], "myapp:on_session", ("127.0.0.1", 8765)),
        (["pkg.mod:app.on_session", ":9000"], "pkg.mod:app.on_session", (None, 9000)),
        (["127.0.0.1:9000", "myapp:on_session"], "myapp:on_session", ("127.0.0.1", 9000)),
        (["localhost:9000"], None, ("localhost", 9000)),
        ([], None, ("127.0.0.1", 8765)),
    ],
)
def test_serve_tells_an_app_from_an_address(argv: list[str], app: str | None, address: Any) -> None:
    args = build_parser().parse_args(["serve", *argv])
    assert (args.app, args.address, args.workers, args.loop, args.hub) == (app, address, 1, "asyncio", None)


@pytest.mark.parametrize(
    "argv",
    [
        ["a:b", "c:d"],
        ["a:b", "1:2", "3:4"],
        ["--workers", "0"],
        ["--loop", "gevent"],
        ["--hub", "http://x"],
        ["host:99999"],
    ],
)
def test_serve_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as raised, contextlib.redirect_stderr(io.StringIO()):
        build_parser().parse_args(["serve", *argv])
    assert raised.value.code == 2


def test_serve_usage_errors_found_when_running_exit_2() -> None:
    assert cli("serve", "--loop", "trio").status == _common.EXIT_USAGE  # the demo is asyncio's
    done = cli("serve", "no_such_module_xyz:on_session", "127.0.0.1:0")
    assert done.status == _common.EXIT_USAGE
    assert "cannot load the application 'no_such_module_xyz:on_session'" in the_error(done)


@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_serve_app_in_two_workers_on_one_port_with_a_redis_hub(
    redis_server: RedisServer,  # noqa: F811 - the fixture of tests/hub/conftest.py
    loop: str,
) -> None:
    server = AppServer(
        "tests.hub.apps:on_session",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--hub",
        redis_server.url,
        "--loop",
        loop,
    )
    try:
        server.wait_for("listening on ws://", count=2)
        ports = {line.rsplit(":", 1)[1] for line in server.log if "listening on" in line}
        assert len(ports) == 1  # both workers on one port

        async def clients() -> None:
            async with contextlib.AsyncExitStack() as stack:
                sessions = [
                    Client(await stack.enter_async_context(session_asyncio.connect(server.url)), f"c{i}")
                    for i in range(12)
                ]
                ids = [await client.session.request(JOIN, "all") for client in sessions]
                # The kernel spread them over both workers (2 * 2**-12 to fail), each a node.
                assert len({i.rpartition(".")[0] for i in ids}) == 2
                await asyncio.sleep(0.3)  # the groups' subscriptions settle on each node
                await sessions[0].session.request(BROADCAST, ["all", "hello"])
                for client in sessions:
                    assert await client.wait_chats(1) == ["hello"]  # every one, once

        asyncio.run(clients())
    finally:
        status = server.stop(signal.SIGINT)
    assert status == 0, server.log
    assert server.log[-1].endswith(" stopped"), server.log
    assert sum(line.endswith("] stopped") for line in server.log) == 2, server.log  # each worker


def test_serve_a_worker_that_cannot_listen_stops_them_all() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            command("serve", "tests.hub.apps:on_session", f"127.0.0.1:{port}", "--workers", "2"),
            capture_output=True,
            text=True,
            env=env(),
            cwd=ROOT,
            timeout=30,
            check=False,
        )
    assert done.returncode == _common.EXIT_CONNECT, done
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "stopping the others" in done.stderr


def test_workers_stop_when_their_supervisor_is_killed() -> None:
    # SIGKILL gives the supervisor no chance to stop its workers: each notices that its
    # stdin (a pipe whose write end only the supervisor held) has ended, and stops itself.
    server = AppServer("tests.hub.apps:on_session", "127.0.0.1:0", "--workers", "2")
    pids: list[int] = []
    try:
        server.wait_for("listening on ws://", count=2, timeout=30)
        pids += [int(line.split("(pid ")[1].split(",")[0]) for line in server.log if "started (pid" in line]
        assert len(pids) == 2, server.log
        server.process.kill()
        server.process.wait(10)
        server.wait_for("] stopped", count=2, timeout=20)  # each worker, in its own words
        for pid in pids:
            assert _ended(pid, timeout=10), f"worker {pid} still running"
    finally:
        for pid in pids:  # left behind only when this test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.stop()


def _ended(pid: int, timeout: float) -> bool:
    # Gone, or a zombie waiting for whoever adopted it to reap it.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False
