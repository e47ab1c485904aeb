"""The long load run: many concurrent sessions on one server process, nothing lost.

    python -m benchmarks.load                      # 1,000 sessions per adapter (trio, asyncio)
    python -m benchmarks.load --sessions 300 --adapters trio asyncio uvloop

For each adapter, a server runs in a subprocess of its own (so that its memory is its
own) and this process is the client, on the same adapter:

1. **Accept**: N sessions connect at once (at most 256 handshakes in flight); the time
   until all are open is the accept time (client side; the server's first-to-last
   `on_session` span is printed too).
2. **Idle memory**: the server's RSS (and, in a second server run under `tracemalloc`, the
   Python heap) before and after the N idle sessions opened, divided by N.
3. **Load**: once every session is open, each makes `--requests` echo requests, one after
   the other, with a payload unique to it (session, number, random nonce) and checks every
   answer against its request, while the server sends it `--notifications` notifications
   (numbered) at the same time. Every answer must come back exactly once and match; every
   notification must arrive exactly once. All N sessions stay open until all are done.
4. **Close**: all close; the server's memory after, to see what stays.

The server also runs alone: `python -m benchmarks.load serve --adapter trio [--tracemalloc]`
prints `PORT n` and serves until its stdin closes. `tests/reliability` runs a short version
of all this (`run_adapter`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import logging
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import attrs
import trio
import uvloop

import session_asyncio
import session_trio
from session_core import Config, Method

T = TypeVar("T")

ADAPTERS = ("trio", "asyncio", "uvloop")
echo: Method[Any, Any, str] = Method("echo", request=Any, response=Any, error=str)
subscribe = Method("subscribe", request=int, response=int, error=str)
tick = Method("tick", request=int, response=None, error=None)
stats: Method[None, Any, str] = Method("stats", request=None, response=Any, error=str)

#: Handshakes in flight at once while connecting.
CONNECT_CONCURRENCY = 256
#: The server's listen backlog (asyncio's default of 100 makes a burst of connects wait
#: for SYN retransmits, which measures the kernel, not the library).
BACKLOG = 1024
#: Sessions opened and closed before measuring, so that one-time costs are not counted.
WARM_UP = 50
#: Heap a closed session may leave behind, at most (caches, freelists): more is a leak.
RETURNED_PER_SESSION = 1024

#: No keepalive pings during the run: they would only add noise to the idle figure.
CONFIG = Config(keepalive_interval=None, keepalive_timeout=None)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError("VmRSS")  # pragma: no cover


# -- the server (a subprocess) -----------------------------------------------------------


class ServerState:
    def __init__(self) -> None:
        self.opened = 0
        self.first_open = 0.0
        self.last_open = 0.0
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()
        "Every session not yet garbage: after the clients leave, only the control session."

    def stats(self) -> dict[str, Any]:
        """The figures so far; the accept span covers the sessions opened since the last call."""
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
        span = self.last_open - self.first_open if self.first_open else 0.0
        self.first_open = 0.0
        return {
            "rss_kib": rss_kib(),
            "traced": traced,
            "opened": self.opened,
            "alive": len(self.live),
            "accept_span": span,
        }


async def _echo(data: Any) -> Any:
    return data


def _register(session: Any, state: ServerState) -> None:
    now = time.monotonic()
    if not state.first_open:
        state.first_open = now
    state.opened += 1
    state.last_open = now
    state.live.add(session)
    session.on_request(echo, _echo)

    async def _stats(_: None) -> dict[str, Any]:
        return state.stats()

    async def _subscribe(count: int) -> int:
        # Notifications while the client's requests flow: numbered, so that the client can
        # tell a lost or repeated one.
        for seq in range(count):
            await session.notify(tick, seq)
        return count

    session.on_request(stats, _stats)
    session.on_request(subscribe, _subscribe)


async def _serve_trio(state: ServerState) -> None:
    async def on_session(session: session_trio.Session) -> None:
        _register(session, state)

    async with trio.open_nursery() as nursery:
        serve = functools.partial(session_trio.serve, on_session, "127.0.0.1", 0, config=CONFIG)
        listeners = await nursery.start(serve)
        print(f"PORT {listeners[0].socket.getsockname()[1]}", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


async def _serve_asyncio(state: ServerState) -> None:
    async def on_session(session: session_asyncio.Session) -> None:
        _register(session, state)

    server = await session_asyncio.serve(on_session, "127.0.0.1", 0, config=CONFIG, backlog=BACKLOG)
    async with server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def serve_main(adapter: str, *, trace: bool) -> None:
    raise_fd_limit()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if trace:
        tracemalloc.start()
    state = ServerState()
    if adapter == "trio":
        trio.run(_serve_trio, state)
    else:
        loop_factory = uvloop.new_event_loop if adapter == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve_asyncio(state))


@contextlib.contextmanager
def server_process(adapter: str, *, trace: bool = False) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """Run a server subprocess; yields its port and the process. Its log goes to a pipe
    that `warnings_of` reads at the end."""
    command = [sys.executable, "-m", "benchmarks.load", "serve", "--adapter", adapter]
    if trace:
        command.append("--tracemalloc")
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the server did not start: {line!r} {process.communicate()[1][-2000:]}")
        yield int(line.split()[1]), process
    finally:
        if process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=20)
        if process.poll() is None:  # pragma: no cover - a hung server
            process.kill()
            process.communicate()


# -- the client --------------------------------------------------------------------------


class Loop:
    """The few things the client needs from trio or asyncio."""

    def __init__(self, adapter: str) -> None:
        self.adapter = adapter
        self.trio = adapter == "trio"

    def run(self, main: Callable[[], Awaitable[T]]) -> T:
        if self.trio:
            return trio.run(main)
        loop_factory = uvloop.new_event_loop if self.adapter == "uvloop" else asyncio.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_call(main))

    def connect(self, url: str) -> contextlib.AbstractAsyncContextManager[Any]:
        module: Any = session_trio if self.trio else session_asyncio
        return module.connect(url, config=CONFIG, connect_timeout=120.0)  # type: ignore[no-any-return]

    async def gather(self, functions: list[Callable[[], Awaitable[None]]]) -> None:
        if self.trio:
            async with trio.open_nursery() as nursery:
                for function in functions:
                    nursery.start_soon(function)
        else:
            async with asyncio.TaskGroup() as group:
                for function in functions:
                    group.create_task(_call(function))

    def event(self) -> Any:
        return trio.Event() if self.trio else asyncio.Event()

    def semaphore(self, value: int) -> Any:
        return trio.Semaphore(value) if self.trio else asyncio.Semaphore(value)

    async def sleep(self, seconds: float) -> None:
        await (trio.sleep(seconds) if self.trio else asyncio.sleep(seconds))

    @contextlib.asynccontextmanager
    async def deadline(self, seconds: float) -> AsyncIterator[None]:
        if self.trio:
            with trio.fail_after(seconds):
                yield
        else:
            async with asyncio.timeout(seconds):
                yield


async def _call(function: Callable[[], Awaitable[T]]) -> T:
    return await function()


@attrs.define
class Figures:
    """What one adapter's run measured and checked."""

    adapter: str
    sessions: int
    requests_per_session: int
    notifications_per_session: int
    opened: int = 0
    accept_seconds: float = 0.0
    server_accept_span: float = 0.0
    load_seconds: float = 0.0
    answers_ok: int = 0
    mismatched: int = 0
    requests_failed: int = 0
    notifications_ok: int = 0
    notifications_lost: int = 0
    notifications_duplicated: int = 0
    session_errors: list[str] = attrs.Factory(list)
    client_warnings: int = 0
    server_warnings: int = 0
    sessions_alive_after_close: int = 0
    "Server sessions not garbage collected a while after every client left (a leak)."
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    rss_after_close_kib: int = 0
    traced_before: int = 0
    traced_idle: int = 0
    traced_after_close: int = 0

    @property
    def rss_per_idle_session(self) -> float:
        """Bytes of server RSS per idle session."""
        return (self.rss_idle_kib - self.rss_before_kib) * 1024 / max(self.opened, 1)

    @property
    def traced_per_idle_session(self) -> float:
        """Bytes of the server's Python heap per idle session (tracemalloc)."""
        return (self.traced_idle - self.traced_before) / max(self.opened, 1)

    @property
    def clean(self) -> bool:
        expected_answers = self.sessions * self.requests_per_session
        expected_notifications = self.sessions * self.notifications_per_session
        return (
            self.opened == self.sessions
            and self.answers_ok == expected_answers
            and self.notifications_ok == expected_notifications
            and not (self.mismatched or self.requests_failed or self.notifications_lost)
            and not (self.notifications_duplicated or self.session_errors)
            and not (self.client_warnings or self.server_warnings)
            and not self.sessions_alive_after_close
        )


class _CountWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


async def _measure(
    loop: Loop, port: int, figures: Figures, *, requests: int, notifications: int, idle_only: bool
) -> None:
    """Connect the sessions, measure, load them (unless `idle_only`), close them."""
    url = f"ws://127.0.0.1:{port}/"
    count = figures.sessions
    async with loop.connect(url) as control:
        # Warm up: pay the one-time costs (imports, caches, first allocations) first.
        await loop.gather([_open_close(loop, url) for _ in range(WARM_UP)])
        before = await control.request(stats, None)
        phases = Phases(loop, count)
        started = time.monotonic()

        def session_worker(index: int) -> Callable[[], Awaitable[None]]:
            async def work() -> None:
                marks = {"open": False, "done": False}
                try:
                    await _one_session(
                        loop,
                        url,
                        index,
                        phases,
                        marks,
                        figures,
                        requests=0 if idle_only else requests,
                        notifications=0 if idle_only else notifications,
                    )
                except Exception as exc:
                    figures.session_errors.append(f"session {index}: {exc!r}")
                    if not marks["open"]:
                        phases.opened()
                    if not marks["done"]:
                        phases.finished()

            return work

        all_open, measured, all_done = phases.all_open, phases.measured, phases.all_done

        async def measure() -> None:
            async with loop.deadline(300.0):
                await all_open.wait()
            figures.accept_seconds = time.monotonic() - started
            await loop.sleep(0.5)  # let the last handshakes settle
            idle = await control.request(stats, None)
            figures.rss_before_kib, figures.rss_idle_kib = before["rss_kib"], idle["rss_kib"]
            figures.traced_before, figures.traced_idle = before["traced"] or 0, idle["traced"] or 0
            figures.server_accept_span = idle["accept_span"]
            figures.opened = idle["opened"] - before["opened"]
            load_started = time.monotonic()
            measured.set()
            async with loop.deadline(600.0):
                await all_done.wait()
            figures.load_seconds = time.monotonic() - load_started

        await loop.gather([measure, *[session_worker(i) for i in range(count)]])
        closed = time.monotonic()
        after = await control.request(stats, None)
        while after["alive"] > 1 and time.monotonic() - closed < 60.0:  # the server ends them
            await loop.sleep(0.2)
            after = await control.request(stats, None)
        # trio drops the timer entries of ended cancel scopes lazily, when their deadline
        # passes (at most the close timeout after the end) or when its heap is pruned: memory
        # given back within that time is not a leak, so look again until then.
        settle = time.monotonic() + (CONFIG.close_timeout or 0.0) + 2.0
        while (
            after["traced"] is not None
            and after["traced"] - (before["traced"] or 0) > count * RETURNED_PER_SESSION
            and time.monotonic() < settle
        ):
            await loop.sleep(0.5)
            after = await control.request(stats, None)
        figures.sessions_alive_after_close = after["alive"] - 1
        figures.rss_after_close_kib, figures.traced_after_close = after["rss_kib"], after["traced"] or 0


def _open_close(loop: Loop, url: str) -> Callable[[], Awaitable[None]]:
    async def open_close() -> None:
        async with loop.connect(url) as session:
            await session.request(echo, 0)

    return open_close


class Phases:
    """Counts sessions through their phases: all open, measured, all done."""

    def __init__(self, loop: Loop, count: int) -> None:
        self.count = count
        self.open = self.done = 0
        self.gate = loop.semaphore(CONNECT_CONCURRENCY)
        self.all_open, self.measured, self.all_done = loop.event(), loop.event(), loop.event()

    def opened(self) -> None:
        self.open += 1
        if self.open == self.count:
            self.all_open.set()

    def finished(self) -> None:
        self.done += 1
        if self.done == self.count:
            self.all_done.set()


async def _one_session(
    loop: Loop,
    url: str,
    index: int,
    phases: Phases,
    marks: dict[str, bool],
    figures: Figures,
    *,
    requests: int,
    notifications: int,
) -> None:
    ticks: list[int] = []

    async def on_tick(seq: int) -> None:
        ticks.append(seq)

    async with phases.gate:
        session_cm = loop.connect(url)
        session = await session_cm.__aenter__()
    try:
        session.on_notification(tick, on_tick)
        marks["open"] = True
        phases.opened()
        await phases.measured.wait()  # every session is open at once before the load begins
        rng = random.Random(index)

        async def ask() -> None:
            for number in range(requests):
                payload = {"session": index, "n": number, "nonce": rng.getrandbits(62)}
                try:
                    answer = await session.request(echo, payload)
                except Exception:
                    figures.requests_failed += 1
                    continue
                if answer == payload:
                    figures.answers_ok += 1
                else:
                    figures.mismatched += 1

        async def listen() -> None:
            if notifications and await session.request(subscribe, notifications) != notifications:
                figures.mismatched += 1

        await loop.gather([ask, listen])
        for _ in range(500):  # the last notifications' handlers may still be queued
            if len(ticks) >= notifications:
                break
            await loop.sleep(0.01)
        unique = set(ticks)
        figures.notifications_ok += len(unique & set(range(notifications)))
        figures.notifications_lost += notifications - len(unique & set(range(notifications)))
        figures.notifications_duplicated += len(ticks) - len(unique)
        marks["done"] = True
        phases.finished()
        await phases.all_done.wait()  # all stay open until all are done
    finally:
        await session_cm.__aexit__(None, None, None)


def run_adapter(
    adapter: str,
    *,
    sessions: int,
    requests: int = 20,
    notifications: int = 10,
    trace: bool = True,
    untraced: bool = True,
) -> Figures:
    """One adapter's whole run: with `untraced`, the accept time, RSS and load (server
    without tracing); with `trace`, the idle heap per session (server under tracemalloc).
    Returns the figures."""
    raise_fd_limit()
    figures = Figures(adapter, sessions, requests, notifications)
    counter = _CountWarnings()
    loggers = [logging.getLogger(name) for name in ("session_core", "session_trio", "session_asyncio")]
    for logger in loggers:
        logger.addHandler(counter)
    loop = Loop(adapter)
    try:
        if untraced:
            with server_process(adapter) as (port, process):
                loop.run(
                    lambda: _measure(
                        loop, port, figures, requests=requests, notifications=notifications, idle_only=False
                    )
                )
                figures.server_warnings += _warnings_of(process)
        if trace:
            traced = Figures(adapter, sessions, 0, 0)
            with server_process(adapter, trace=True) as (port, process):
                loop.run(lambda: _measure(loop, port, traced, requests=0, notifications=0, idle_only=True))
                figures.server_warnings += _warnings_of(process)
            figures.traced_before, figures.traced_idle = traced.traced_before, traced.traced_idle
            figures.traced_after_close = traced.traced_after_close
            figures.sessions_alive_after_close += traced.sessions_alive_after_close
            figures.session_errors += traced.session_errors
            if not untraced:
                figures.opened = traced.opened
    finally:
        for logger in loggers:
            logger.removeHandler(counter)
    figures.client_warnings = counter.count
    return figures


def _warnings_of(process: subprocess.Popen[str]) -> int:
    """Close the server's stdin (it shuts down) and count the warnings it logged."""
    _, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL"))]
    for line in lines[:5]:
        print(f"  server log: {line}", file=sys.stderr)
    return len(lines)


# -- the report --------------------------------------------------------------------------


def report(all_figures: list[Figures]) -> str:
    rows = [
        "| adapter | sessions | accept all (client) | accept span (server) | load: requests + notifications |"
        " answers ok / mismatched / failed | notifications ok / lost / dup | RSS per idle session |"
        " heap per idle session | heap left after close | sessions left after close |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in all_figures:
        total = f.sessions * (f.requests_per_session + f.notifications_per_session)
        rows.append(
            f"| {f.adapter} | {f.opened}/{f.sessions} | {f.accept_seconds:.2f} s"
            f" | {f.server_accept_span:.2f} s"
            f" | {total} in {f.load_seconds:.2f} s | {f.answers_ok} / {f.mismatched} / {f.requests_failed}"
            f" | {f.notifications_ok} / {f.notifications_lost} / {f.notifications_duplicated}"
            f" | {f.rss_per_idle_session / 1024:.1f} KiB | {f.traced_per_idle_session / 1024:.1f} KiB"
            f" | {(f.traced_after_close - f.traced_before) / 1024:.0f} KiB"
            f" | {f.sessions_alive_after_close} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (used by the run itself)")
    serve.add_argument("--adapter", choices=ADAPTERS, required=True)
    serve.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--adapters", nargs="+", choices=ADAPTERS, default=["trio", "asyncio"])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20, help="echo requests per session")
    parser.add_argument("--notifications", type=int, default=10, help="notifications to each session")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve_main(args.adapter, trace=args.tracemalloc)
        return 0
    results = []
    for adapter in args.adapters:
        print(f"{adapter}: {args.sessions} sessions ...", flush=True)
        figures = run_adapter(
            adapter,
            sessions=args.sessions,
            requests=args.requests,
            notifications=args.notifications,
            trace=not args.no_trace,
        )
        for error in figures.session_errors[:5]:
            print(f"  {error}")
        print(f"  clean: {figures.clean}", flush=True)
        results.append(figures)
    print()
    print(report(results))
    return 0 if all(f.clean for f in results) else 1


if __name__ == "__main__":
    sys.exit(main())
