"""A server process of the benchmark: one node of one stack, driven over a control port.

    python -m benchmarks.hub.server STACK NODE REDIS_URL [--loop uvloop|asyncio]

It serves WebSocket clients on a free loopback port as one node of its stack on the given
Redis (session_hub: `open_hub` and `session_asyncio.serve`; socketio: an `AsyncServer` on
aiohttp with `AsyncRedisManager`, WebSocket transport only), and prints one JSON line,
`{"port": ..., "control": ..., "pid": ...}`, once it listens. A client names the groups
it joins in its URL's query (`?g=a,b`); the server joins them before the client learns its
id (session: a `hello` notification; Socket.IO: its CONNECT packet).

The control port takes JSON lines from the orchestrator, in the event loop under test:

- `{"op": "publish", "kind": "broadcast"|"direct", "lane": L, "targets": [...], "seq": S,
  "count": N, "size": B}`: publish N messages, the i-th to `targets[i % len(targets)]` (a
  group, or a session id), with sequence numbers from S. Not answered. The commands of one
  lane run one after the other (so its sequence numbers leave in order), lanes at once.
- `{"op": "request", "targets": [...], "count": N, "seconds": T, "size": B, "concurrency":
  C}`: requests to those sessions from C callers, each one at a time (at most N in all, at
  most T seconds); answers the latencies.
- `{"op": "stats"}`: answers publish errors so far.

The process ends when its stdin ends (the orchestrator closed it or died).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import orjson

from .common import ECHO, EVENT, HELLO, HOST, payload

REQUEST_TIMEOUT = 5.0
"Seconds a request to a client may take before it counts as an error."


class Stack(Protocol):
    """What the control port needs of a stack's node."""

    port: int

    async def broadcast(self, group: str, data: Any) -> None:
        """A notification to every member of `group`, on every node."""

    async def notify(self, target: str, data: Any) -> None:
        """A notification to one session, wherever it is."""

    async def request(self, target: str, data: Any) -> Any:
        """A request to one session's client, wherever it is; its answer."""


def groups_of(path_and_query: str) -> list[str]:
    """The groups named in a URL's `g` query parameter (comma-separated)."""
    query = parse_qs(urlsplit(path_and_query).query)
    return [g for value in query.get("g", []) for g in value.split(",") if g]


# -- session_hub ------------------------------------------------------------------------------


@asynccontextmanager
async def session_stack(redis_url: str) -> AsyncIterator[Stack]:
    """A session_hub node: `session_asyncio.open_hub` with `serve(..., hub=hub)`."""
    import session_asyncio  # noqa: PLC0415 - only this stack needs it
    from session_core import Method  # noqa: PLC0415

    notice: Method[Any, None, None] = Method(EVENT, request=Any, response=None, error=None)
    hello: Method[str, None, None] = Method(HELLO, request=str, response=None, error=None)
    echo: Method[Any, Any, Any] = Method(ECHO, request=Any, response=Any, error=Any)

    async def on_session(session: session_asyncio.Session) -> None:
        for group in groups_of(session.path):
            await session.join(group)
        await session.notify(hello, session.id)

    async with session_asyncio.open_hub(redis_url) as hub:
        server = await session_asyncio.serve(on_session, HOST, 0, hub=hub)

        class Node:
            port: int = server.sockets[0].getsockname()[1]

            async def broadcast(self, group: str, data: Any) -> None:
                await hub.broadcast(group, notice, data)

            async def notify(self, target: str, data: Any) -> None:
                await hub.notify(target, notice, data)

            async def request(self, target: str, data: Any) -> Any:
                return await hub.request(target, echo, data, timeout=REQUEST_TIMEOUT)

        async with server:
            yield Node()


# -- python-socketio --------------------------------------------------------------------------


@asynccontextmanager
async def socketio_stack(redis_url: str) -> AsyncIterator[Stack]:
    """A python-socketio node: `AsyncServer` on aiohttp with `AsyncRedisManager`."""
    import socketio  # type: ignore[import-untyped]  # noqa: PLC0415 - only this stack needs it
    from aiohttp import web  # noqa: PLC0415

    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=socketio.AsyncRedisManager(redis_url),
        transports=["websocket"],
        logger=False,
        engineio_logger=False,
    )
    app = web.Application()
    sio.attach(app)

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        for group in groups_of("/?" + environ.get("QUERY_STRING", "")):
            await sio.enter_room(sid, group)

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()

    class Node:
        port: int = runner.addresses[0][1]

        async def broadcast(self, group: str, data: Any) -> None:
            await sio.emit(EVENT, data, room=group)

        async def notify(self, target: str, data: Any) -> None:
            await sio.emit(EVENT, data, to=target)

        async def request(self, target: str, data: Any) -> Any:
            return await sio.call(ECHO, data, to=target, timeout=REQUEST_TIMEOUT)

    try:
        yield Node()
    finally:
        await runner.cleanup()


# -- the control port -------------------------------------------------------------------------


class Control:
    """The control port's commands, run in the event loop under test."""

    def __init__(self, stack: Stack, node: int) -> None:
        self.stack = stack
        self.node = node
        self.errors = 0
        self.first_error: str | None = None
        self._lanes: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(exc).__name__}: {exc}"[:200]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One control connection: a command per line."""
        with contextlib.suppress(ConnectionError):
            async for line in reader:
                command = orjson.loads(line)
                op = command.get("op")
                if op == "publish":
                    self._queue(command)
                    continue
                if op == "request":
                    answer = await self._requests(command)
                elif op == "stats":
                    answer = {"errors": self.errors, "first_error": self.first_error}
                else:
                    answer = {"error": f"unknown op {op!r}"}
                writer.write(orjson.dumps(answer) + b"\n")
                await writer.drain()
        writer.close()

    def _queue(self, command: dict[str, Any]) -> None:
        lane = int(command["lane"])
        queue = self._lanes.get(lane)
        if queue is None:
            queue = self._lanes[lane] = asyncio.Queue()
            task = asyncio.get_running_loop().create_task(self._lane(queue))
            self._tasks.add(task)
        queue.put_nowait(command)

    async def _lane(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            command = await queue.get()
            targets: list[str] = command["targets"]
            send = self.stack.broadcast if command["kind"] == "broadcast" else self.stack.notify
            lane, seq, size = int(command["lane"]), int(command["seq"]), int(command["size"])
            for i in range(int(command["count"])):
                try:
                    await send(targets[i % len(targets)], payload(self.node, lane, seq + i, size))
                except Exception as exc:
                    self._failed(exc)

    async def _requests(self, command: dict[str, Any]) -> dict[str, Any]:
        targets: list[str] = command["targets"]
        latencies: list[float] = []
        errors = wrong = 0
        first_error: str | None = None
        deadline = time.perf_counter() + float(command["seconds"])
        count = int(command["count"])
        numbers = iter(range(count))

        async def caller() -> None:
            # One caller: a request at a time; `concurrency` callers share the count.
            nonlocal errors, wrong, first_error
            for i in numbers:
                if time.perf_counter() >= deadline:
                    break
                data = payload(self.node, 0, i, int(command["size"]))
                begin = time.perf_counter()
                try:
                    answer = await self.stack.request(targets[i % len(targets)], data)
                except Exception as exc:
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]
                    continue
                latencies.append(time.perf_counter() - begin)
                if answer != data:
                    wrong += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(int(command.get("concurrency", 1)))))
        return {
            "latencies": latencies,
            "elapsed": time.perf_counter() - started,
            "errors": errors,
            "wrong": wrong,
            "first_error": first_error,
        }


def void(_: object) -> None:
    """Drop a value (a lambda that must return None)."""


def watch_stdin(on_end: Callable[[], None]) -> None:
    """Call `on_end` (in a daemon thread) once stdin reaches its end."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        on_end()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def main_async(stack_name: str, node: int, redis_url: str) -> None:
    """Serve until stdin ends.

    With `HUB_BENCH_PROFILE=<directory>` in the environment, the process runs under
    pyinstrument and writes `<stack>-<node>.txt` there when it ends (for finding where a
    stack spends its time, not for the recorded numbers: profiling slows it down).
    """
    profile_dir = os.environ.get("HUB_BENCH_PROFILE")
    profiler: Any = None
    if profile_dir:
        import pyinstrument  # noqa: PLC0415 - only when asked for

        profiler = pyinstrument.Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    watch_stdin(lambda: void(loop.call_soon_threadsafe(stop.set)))
    opener = session_stack if stack_name == "session_hub" else socketio_stack
    async with opener(redis_url) as stack:
        control = Control(stack, node)
        listener = await asyncio.start_server(control.serve, HOST, 0)
        control_port = listener.sockets[0].getsockname()[1]
        sys.stdout.write(json.dumps({"port": stack.port, "control": control_port, "pid": os.getpid()}) + "\n")
        sys.stdout.flush()
        async with listener:
            await stop.wait()
    if profiler is not None:
        profiler.stop()
        path = os.path.join(profile_dir or ".", f"{stack_name}-{node}.txt")
        with open(path, "w", encoding="utf-8") as out:
            out.write(profiler.output_text(unicode=False, show_all=False))
        profiler.last_session.save(path.removesuffix(".txt") + ".pyisession")
    # Exit at once: lingering sessions and Redis connections are the orchestrator's to drop.
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    """The worker's command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hub.server")
    parser.add_argument("stack", choices=["session_hub", "socketio"])
    parser.add_argument("node", type=int)
    parser.add_argument("redis_url")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415

        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main_async(args.stack, args.node, args.redis_url))
    except BaseException as exc:
        traceback.print_exc()
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}) + "\n")
        sys.stdout.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
