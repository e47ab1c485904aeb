"""`session-py serve`: the demo server, or an application's `on_session`, in workers.

`session-py serve [APP] [HOST:PORT] [--workers N] [--hub URL] [--loop LOOP]`, the way
uvicorn runs an app: `APP` is `module:attribute`, an `async def on_session(session)`
imported from the current directory (`session.hub` reaches other sessions). With more
than one worker, or a loop other than asyncio, this process supervises: it starts the
workers (`worker_main`), each a node of the same hub listening on the
same port (`SO_REUSEPORT`), and stops them all on Ctrl-C or SIGTERM. A worker also stops
when its supervisor is gone, even killed with SIGKILL: it holds the write end of the
worker's standard input, which the worker watches for the end of file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import attrs

import session_asyncio
from session_asyncio import Server, Session, serve
from session_core import (
    Config,
    Method,
    MethodError,
    SessionClosed,
)

from ._common import (
    _CLOSE_TIMEOUT,
    DEFAULT_ADDRESS,
    EXIT_CONNECT,
    EXIT_OK,
    EXIT_USAGE,
    Streams,
    _address,
    _count,
    _Failure,
    _say,
)

#: The loops `--loop` offers.
LOOPS = ("asyncio", "uvloop", "trio")
#: What a worker process runs (`python -c`: `-m` of a module its package imports warns).
_WORKER = "import sys; from session_cli._serve import worker_main; sys.exit(worker_main(sys.argv[1:]))"
#: Seconds the supervisor gives its workers to stop after SIGTERM, before SIGKILL.
WORKER_STOP_TIMEOUT = 10.0

_APP = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

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
    if args.app is None and args.loop == "trio":
        raise _Failure(EXIT_USAGE, "the demo server runs on asyncio or uvloop; --loop trio needs an APP")
    if args.worker is None and (args.workers > 1 or args.loop != "asyncio"):
        return await _supervise(args, streams)
    log = _logger(args, streams)
    if args.app is not None:
        with _hub_log(args, streams):
            return await _serve_app_asyncio(args, log)
    host, port = args.address
    interval: float = args.tick

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
        server = await serve(
            on_session, host, port, config=Config(close_timeout=_CLOSE_TIMEOUT), reuse_port=args.reuse_port
        )
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None

    def announce() -> None:
        for sock in server.sockets:
            log(f"listening on ws://{_peer(sock.getsockname())}/")
        ticks = f"tick every {interval:g} s" if interval else "no tick"
        log(f"methods: echo, add, fail, sleep; notifications: welcome, {ticks}; Ctrl-C stops")

    async with server:
        await _serve_until_stopped(server, announce)
        log("stopped")
    return EXIT_OK


async def _serve_until_stopped(server: Server, announce: Callable[[], None]) -> None:
    """Serve until Ctrl-C or SIGTERM (every session is closed with 1001 first).

    `announce` (the "listening" lines) runs once SIGTERM is handled: a SIGTERM that comes
    after them always stops the server cleanly, never kills it where it stands.
    """
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        announce()
        await server.serve_forever()
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM
        task.uncancel()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def _reason(reason: str | None) -> str:
    return f": {reason}" if reason else ""


# -- an application, in this process or in workers -----------------------------------------


class _Targets(argparse.Action):
    """`serve`'s positionals: `[APP] [HOST:PORT]`, told apart by their form."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        texts = [values] if isinstance(values, str) else list(values or ())
        app: str | None = None
        address: tuple[str | None, int] = DEFAULT_ADDRESS
        if len(texts) > 2:
            raise argparse.ArgumentError(self, "at most an APP and a HOST:PORT")
        for text in texts:
            if _APP.match(text) and not text.rpartition(":")[2].isdigit():
                if app is not None:
                    raise argparse.ArgumentError(self, f"two applications: {app!r} and {text!r}")
                app = text
            else:
                try:
                    address = _address(text)
                except argparse.ArgumentTypeError as exc:
                    raise argparse.ArgumentError(self, str(exc)) from None
        namespace.app, namespace.address = app, address


def _hub_url(text: str) -> str:
    """An argparse type: a hub URL (`memory://`, `redis://...`, `rediss://...`)."""
    if not text.startswith(("memory://", "redis://", "rediss://")):
        raise argparse.ArgumentTypeError(f"not a hub URL (memory://, redis://, rediss://): {text!r}")
    if text.startswith(("redis://", "rediss://")) and not _has_module("coredis"):
        # Said here, once and in one line, rather than by every worker's `open_hub`.
        raise argparse.ArgumentTypeError("a Redis hub needs the redis extra: pip install 'session-py[redis]'")
    return text


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a None entry in sys.modules
        return False


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """The options of `serve` that run an application: workers, hub, loop."""
    parser.add_argument(
        "targets",
        metavar="[APP] [HOST:PORT]",
        nargs="*",
        action=_Targets,
        help="APP: module:attribute, an `async def on_session(session)` (default: the demo "
        "server); HOST:PORT: where to listen (default: 127.0.0.1:8765; :PORT listens on every "
        "interface; port 0 picks a free one)",
    )
    parser.set_defaults(app=None, address=DEFAULT_ADDRESS)
    parser.add_argument(
        "-w",
        "--workers",
        metavar="N",
        type=_count,
        default=1,
        help="worker processes sharing the port (SO_REUSEPORT), each a node of the hub (default: 1)",
    )
    parser.add_argument(
        "--hub",
        metavar="URL",
        type=_hub_url,
        help="the hub the sessions are attached to: redis://HOST:PORT/DB or rediss://... "
        "(workers reach each other's sessions); default: an in-process hub per worker",
    )
    parser.add_argument(
        "--loop", choices=LOOPS, default="asyncio", help="the event loop of the workers (default: asyncio)"
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT (implied by --workers above 1), to share the port with other processes",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set in the workers


def _logger(args: argparse.Namespace, streams: Streams) -> Callable[[str], None]:
    label = f"[worker {args.worker}] " if args.worker is not None else ""

    def log(text: str) -> None:
        _say(streams.stderr, f"{time.strftime('%H:%M:%S')} {label}{text}")

    return log


@contextlib.contextmanager
def _hub_log(args: argparse.Namespace, streams: Streams) -> Iterator[None]:
    # The hub's own lines (connection lost, reconnected, messages lost) go to the same log,
    # while an application is served (and no longer: `run` may be called again in-process).
    label = f"[worker {args.worker}] " if args.worker is not None else ""
    handler = logging.StreamHandler(streams.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {label}%(message)s", "%H:%M:%S"))
    hub_logger = logging.getLogger("session_hub")
    level = hub_logger.level
    hub_logger.addHandler(handler)
    hub_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        hub_logger.removeHandler(handler)
        hub_logger.setLevel(level)


def _cannot_listen(host: str | None, port: int, exc: OSError) -> _Failure:
    shown = f"[{host}]" if host and ":" in host else host or "*"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return _Failure(EXIT_CONNECT, f"cannot listen on {shown}:{port}: {reason}")


def _load_app(spec: str) -> Callable[[Any], Awaitable[object]]:
    """Import `module:attribute` (from the current directory first, as uvicorn does)."""
    module_name, _, attribute = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise _Failure(EXIT_USAGE, f"cannot load the application {spec!r}: {exc}") from None
    if not callable(value):
        raise _Failure(EXIT_USAGE, f"the application {spec!r} is not callable")
    return value  # type: ignore[no-any-return]


def _hub_state(hub: Any) -> str:
    return f"node {hub.node_id} (hub {'connected' if hub.connected else 'NOT connected, retrying'})"


async def _serve_app_asyncio(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    app = _load_app(args.app)
    host, port = args.address
    async with session_asyncio.open_hub(args.hub) as hub:
        try:
            server = await serve(app, host, port, hub=hub, reuse_port=args.reuse_port)
        except OSError as exc:
            raise _cannot_listen(host, port, exc) from None

        def announce() -> None:
            for sock in server.sockets:
                log(f"{args.app} on {_hub_state(hub)}: listening on ws://{_peer(sock.getsockname())}/")

        async with server:
            await _serve_until_stopped(server, announce)
    log("stopped")
    return EXIT_OK


async def _serve_app_trio(args: argparse.Namespace, streams: Streams) -> int:
    import trio  # noqa: PLC0415 - trio is an extra, imported only when asked for

    import session_trio  # noqa: PLC0415

    log = _logger(args, streams)
    app = _load_app(args.app)
    host, port = args.address
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with session_trio.open_hub(args.hub) as hub, trio.open_nursery() as nursery:
            serving = functools.partial(
                session_trio.serve, app, host, port, hub=hub, reuse_port=args.reuse_port
            )
            try:
                listeners = await nursery.start(serving)
            except OSError as exc:
                raise _cannot_listen(host, port, exc) from None
            for listener in listeners:
                address = listener.socket.getsockname()
                log(f"{args.app} on {_hub_state(hub)}: listening on ws://{_peer(address)}/")
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()  # every session closes with 1001
    log("stopped")
    return EXIT_OK


def _child_argv(args: argparse.Namespace, port: int) -> list[str]:
    host = args.address[0]
    shown = "" if host is None else (f"[{host}]" if ":" in host else host)
    argv = [f"{shown}:{port}", "--tick", str(args.tick), "--loop", args.loop]
    if args.app is not None:
        argv.insert(0, args.app)
    if args.hub is not None:
        argv += ["--hub", args.hub]
    if args.workers > 1 or args.reuse_port:
        argv.append("--reuse-port")
    return argv


def _hold_port(host: str | None) -> socket.socket:
    # Port 0 with several workers: pick the port here, in a socket bound with SO_REUSEPORT
    # and never listening (so it takes no connection), kept while the workers run.
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host or "", 0))
    return sock


async def _supervise(args: argparse.Namespace, streams: Streams) -> int:
    log = _logger(args, streams)
    host, port = args.address
    holder = _hold_port(host) if port == 0 and args.workers > 1 else None
    if holder is not None:
        port = holder.getsockname()[1]
    if args.hub is None and args.workers > 1:
        log("no --hub: each worker has its own in-process hub (use --hub redis://... to join them)")
    workers: list[asyncio.subprocess.Process] = []
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    status = EXIT_OK
    try:
        for number in range(1, args.workers + 1):
            argv = [*_child_argv(args, port), "--worker", str(number)]
            # The worker's stdin is a pipe held here: its end of file tells the worker that
            # this process is gone, however it ended (`_stop_with_supervisor`).
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WORKER, *argv, stdin=asyncio.subprocess.PIPE
            )
            workers.append(worker)
            log(f"worker {number} started (pid {workers[-1].pid}, {args.loop})")
        waits = {asyncio.ensure_future(worker.wait()): n for n, worker in enumerate(workers, 1)}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        # A worker ended by itself (it could not listen, the app failed): stop them all.
        ended = next(iter(done))
        code = ended.result()
        log(f"worker {waits[ended]} exited with status {code}; stopping the others")
        status = code if code > 0 else 1
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM
        task.uncancel()
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)
        await _stop_workers(workers, log)
        if holder is not None:
            holder.close()
    log("stopped")
    return status


async def _stop_workers(workers: list[asyncio.subprocess.Process], log: Callable[[str], None]) -> None:
    running = [worker for worker in workers if worker.returncode is None]
    for worker in running:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
    if not running:
        return
    waits = [asyncio.ensure_future(worker.wait()) for worker in running]
    _, late = await asyncio.wait(waits, timeout=WORKER_STOP_TIMEOUT)
    if late:
        log(f"{len(late)} worker(s) did not stop within {WORKER_STOP_TIMEOUT:g} s: killed")
        for worker in running:
            if worker.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.kill()
        await asyncio.wait([asyncio.ensure_future(w.wait()) for w in running])


def worker_main(argv: Sequence[str]) -> int:
    """A worker process: `serve` with the arguments `argv`, on the loop they name."""
    from ._cli import build_parser  # noqa: PLC0415 - the parser imports this module

    # The supervisor stops its workers with SIGTERM; a Ctrl-C at a terminal reaches the
    # whole process group, and is left to the supervisor so that every worker stops once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = build_parser().parse_args(["serve", *argv])
    _stop_with_supervisor()
    streams = Streams.system()
    try:
        if args.loop == "trio":
            import trio  # noqa: PLC0415

            try:
                with _hub_log(args, streams):
                    return trio.run(_serve_app_trio, args, streams)
            except BaseExceptionGroup as group:  # from the nursery: a failure inside
                failure, _ = group.split(_Failure)
                if failure is None:
                    raise
                raise _first(failure) from None
        from ._cli import run  # noqa: PLC0415

        if args.loop == "uvloop":
            import uvloop  # noqa: PLC0415

            return uvloop.run(run(args, streams))
        return asyncio.run(run(args, streams))
    except _Failure as failure:
        _say(streams.stderr, f"session-py: {failure.message}")
        return failure.status


def _stop_with_supervisor() -> None:
    # The supervisor holds the write end of this worker's stdin and never writes to it: the
    # end of file means the supervisor has exited, and the worker stops as on SIGTERM
    # (every session closed with 1001), whichever loop it runs. A thread, since it blocks.
    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="session-py supervisor watch", daemon=True).start()


def _first(group: BaseExceptionGroup[_Failure]) -> _Failure:
    found = group.exceptions[0]
    return found if isinstance(found, _Failure) else _first(found)
