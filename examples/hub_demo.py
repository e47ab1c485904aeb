"""The hub in action: two worker processes on one port, one Redis, clients on both.

Run it with `bash run.sh hub-demo` (or `python examples/hub_demo.py`). It starts a
temporary `redis-server` on a free port, then `session-py serve hub_demo:on_session
--workers 2 --hub redis://...` (two processes sharing one port, each a node of the hub),
connects six clients (the kernel spreads them over the workers), and shows a broadcast
reaching every client on both nodes and a request from one node answered by a client of
the other. Without `redis-server` (or with `--memory`) it says how to get one and shows the
in-process hub instead: two servers in this process, the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import session_asyncio
from session_core import Method, MethodError, SessionClosed
from session_core.driver import SessionDriver

HERE = Path(__file__).resolve().parent
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]

HELLO = Method("hello", request=None, response=str, error=None)
"Client to its node: join the lobby; answers the session's id."
SHOUT = Method("shout", request=str, response=None, error=None)
"Client to its node: broadcast to the lobby, on every node."
ASK = Method("ask", request=str, response=str, error=str)
"Client to its node: ask that session, wherever it is, who it is (`hub.request`)."
WHOAMI = Method("whoami", request=None, response=str, error=None)
"Node to a client: your name?"
CHAT = Method("chat", request=str, response=None, error=None)
"Node to a client: a message of the lobby."


async def on_session(session: SessionDriver[Any, Any]) -> None:
    """The server's side, in every worker: what `session-py serve hub_demo:on_session` runs."""
    hub = session.hub
    assert hub is not None

    @session.on_request(HELLO)
    async def _hello(_: None) -> str:
        await session.join("lobby")
        return session.id

    @session.on_request(SHOUT)
    async def _shout(text: str) -> None:
        await hub.broadcast("lobby", CHAT, text)

    @session.on_request(ASK)
    async def _ask(session_id: str) -> str:
        try:
            return await hub.request(session_id, WHOAMI, None, timeout=5)
        except Exception as exc:
            raise MethodError(f"{type(exc).__name__}: {exc}") from None


async def clients(url: str) -> None:
    """Connect the clients, then show a broadcast and a cross-node request."""
    async with contextlib.AsyncExitStack() as stack:
        names = list(NAMES)
        got: dict[str, list[str]] = {}
        ids: dict[str, str] = {}
        for name in names:
            got[name] = []
            session = await stack.enter_async_context(session_asyncio.connect(url))

            @session.on_request(WHOAMI)
            async def _whoami(_: None, name: str = name) -> str:
                return name

            @session.on_notification(CHAT)
            async def _chat(text: str, name: str = name) -> None:
                got[name].append(text)
                print(f"  {name:6} got {text!r}")

            ids[name] = await session.request(HELLO, None)
            if name == NAMES[0]:
                first = session
            if (
                name == names[-1]
                and len(names) < 26
                and len({i.rpartition(".")[0] for i in ids.values()}) < 2
            ):
                # The kernel put every client on one worker so far (it picks by a hash of
                # the connection): one more client, until both workers have some.
                names.append(f"guest{len(names) - len(NAMES) + 1}")
        nodes = {name: session_id.rpartition(".")[0] for name, session_id in ids.items()}
        for name in names:
            print(f"{name:6} is session {ids[name]} (node {nodes[name]})")
        await asyncio.sleep(0.3)  # each node's subscription to the lobby settles

        print(f"\nalice broadcasts to the lobby, through node {nodes['alice']}:")
        await first.request(SHOUT, "hello, everyone")
        async with asyncio.timeout(5):
            while not all(got.values()):
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        reached = {nodes[name] for name in names if got[name]}
        print(f"every client got it once, on {len(reached)} node(s)")

        others = [name for name in names if nodes[name] != nodes["alice"]]
        target = others[0] if others else NAMES[1]
        where = "another node" if others else "the same node (the kernel put everyone on one)"
        print(f"\nalice's node asks {target} (node {nodes[target]}, {where}) who it is:")
        started = time.perf_counter()
        answer = await first.request(ASK, ids[target])
        print(f"  whoami -> {answer!r} in {1000 * (time.perf_counter() - started):.1f} ms")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(executable: str) -> Iterator[str]:
    """A temporary `redis-server` on a free port (no persistence); yields its URL."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        argv = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


@contextlib.asynccontextmanager
async def workers(hub_url: str) -> AsyncIterator[str]:
    """`session-py serve hub_demo:on_session --workers 2 --hub URL`; yields its URL."""
    port = _free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    argv = ["-m", "session_cli", "serve", "hub_demo:on_session", f"127.0.0.1:{port}", "--workers", "2"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, "--hub", hub_url, cwd=HERE, env=env, stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    listening = 0

    async def echo() -> None:
        nonlocal listening
        assert process.stderr is not None
        async for line in process.stderr:
            text = line.decode().rstrip()
            print(f"  [server] {text}")
            listening += "listening on" in text

    echoing = asyncio.ensure_future(echo())
    try:
        async with asyncio.timeout(20):
            while listening < 2:
                await asyncio.sleep(0.02)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)  # Ctrl-C: every worker stops cleanly
        await process.wait()
        await echoing


async def with_redis(url: str) -> None:
    """Two worker processes on one port, one Redis."""
    print(f"redis-server at {url}; starting two workers on one port:")
    async with workers(url) as ws_url:
        print()
        await clients(ws_url)
        print("\nstopping (Ctrl-C to the server):")


async def in_process() -> None:
    """The in-process hub: two servers of this process on one port, one in-process bus."""
    port = _free_port()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            # `memory://demo`: the hubs of this process share one bus, as nodes share Redis.
            hub = await stack.enter_async_context(session_asyncio.open_hub("memory://demo"))
            server = await session_asyncio.serve(on_session, "127.0.0.1", port, hub=hub, reuse_port=True)
            await stack.enter_async_context(server)
        print(f"two servers on port {port}, each a node of one in-process hub\n")
        with contextlib.suppress(SessionClosed):
            await clients(f"ws://127.0.0.1:{port}/")


def main() -> None:
    """Redis when installed (and not `--memory`), else the in-process hub."""
    executable = None if "--memory" in sys.argv[1:] else shutil.which("redis-server")
    if executable is None:
        if "--memory" not in sys.argv[1:]:
            print("redis-server not found (apt-get install redis-server); showing the in-process hub")
        asyncio.run(in_process())
    else:
        with redis_server(executable) as url:
            asyncio.run(with_redis(url))
    print("done")


if __name__ == "__main__":
    main()
