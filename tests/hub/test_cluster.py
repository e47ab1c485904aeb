"""The hub across processes: server processes on one real `redis-server`.

Each node is a process (`tests/hub/node.py`) serving `tests/hub/apps.py` on trio, asyncio
or uvloop, with a lease of 1 s; the clients live in the test's process (asyncio) and drive
their nodes with requests. What is claimed here is claimed of real processes and a real
Redis: broadcast exactly once, direct sends and requests across nodes with every outcome,
presence that converges and forgets a killed node within its lease, and recovery, counted
losses and no hang when Redis is killed and restarted or its pub/sub clients are killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

import session_asyncio
from benchmarks.hub.redis import RedisServer
from session_core import RemoteError

from .apps import ASK, BROADCAST, JOIN, MEMBERS, NOTIFY, STATS, Client

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0  # tests/hub/node.py's


class NodeProcess:
    """A server process of the cluster, its log collected."""

    def __init__(self, loop: str, url: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.loop = loop
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.hub.node", loop, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("READY"), (line, self.log)
        _, port, self.node_id = line.split()
        self.url = f"ws://127.0.0.1:{port}/"

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.rstrip("\n"))

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        return self.process.returncode


@pytest.fixture
def start_node(redis_server: RedisServer) -> Iterator[Any]:
    nodes: list[NodeProcess] = []

    def start(loop: str) -> NodeProcess:
        nodes.append(NodeProcess(loop, redis_server.url))
        return nodes[-1]

    try:
        yield start
    finally:
        for node in nodes:
            node.stop()


def _run(main: Any) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(40):  # nothing hangs
            await main()

    asyncio.run(bounded())


async def _clients(stack: AsyncExitStack, node: NodeProcess, *names: str) -> list[Client]:
    return [
        Client(await stack.enter_async_context(session_asyncio.connect(node.url)), name) for name in names
    ]


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def test_three_nodes_trio_asyncio_uvloop(start_node: Any) -> None:
    nodes = [start_node(loop) for loop in ("trio", "asyncio", "uvloop")]

    async def main() -> None:
        async with AsyncExitStack() as stack:
            clients = [c for i, n in enumerate(nodes) for c in await _clients(stack, n, f"a{i}", f"b{i}")]
            ids = [await c.session.request(JOIN, "room") for c in clients]
            assert [i.rpartition(".")[0] for i in ids] == [n.node_id for n in nodes for _ in "ab"]

            # Members converge, seen from every node.
            for client in clients[::2]:
                await _until(
                    lambda c=client: _same(c.session.request(MEMBERS, "room"), sorted(ids)), 5, "members"
                )

            # A broadcast from each node reaches every member exactly once.
            for i in (0, 2, 4):
                await clients[i].session.request(BROADCAST, ["room", f"from node {i // 2}"])
            for client in clients:
                assert sorted(await client.wait_chats(3)) == ["from node 0", "from node 1", "from node 2"]

            # Direct notifications and requests cross nodes, with every outcome.
            a0, b1, a2 = clients[0], clients[3], clients[4]
            await a0.session.request(NOTIFY, [ids[3], "direct"])
            assert (await b1.wait_chats(4))[-1] == "direct"
            assert await a0.session.request(ASK, [ids[3], "whoami", 5]) == "result:b1"
            assert await a2.session.request(ASK, [ids[0], "whoami", 5]) == "result:a0"
            assert await a0.session.request(ASK, [ids[4], "fail", 5]) == "RemoteError:a2 fails"
            assert await a0.session.request(ASK, [ids[3], "hang", 0.3]) == "TimeoutError"
            started = time.monotonic()
            unknown = f"{nodes[1].node_id}.999"
            assert await a0.session.request(ASK, [unknown, "whoami", 30]) == "SessionNotFound"
            assert await a0.session.request(ASK, ["gone-node.1", "whoami", 30]) == "SessionNotFound"
            assert time.monotonic() - started < 2  # at once, not after the timeout
            with pytest.raises(RemoteError) as raised:
                await a0.session.request(NOTIFY, ["gone-node.1", "x"])
            assert raised.value.error == "SessionNotFound"

            # The session ends while a request from another node waits: SessionClosed.
            asking = asyncio.ensure_future(a0.session.request(ASK, [ids[5], "hang", 30]))
            await _until(lambda: _true(clients[5].hanging > 0), 5, "the request arrives")
            await clients[5].session.close()
            assert await asking == "SessionClosed"

            # A session that ends leaves its groups, on every node's view.
            remaining = sorted(ids[:5])
            await _until(lambda: _same(a0.session.request(MEMBERS, "room"), remaining), 5, "left")

    _run(main)
    for node in nodes:
        assert node.stop() == 0, node.log


def test_a_node_killed_drops_out_within_its_lease(start_node: Any) -> None:
    survivor, victim = start_node("asyncio"), start_node("trio")

    async def main() -> None:
        async with AsyncExitStack() as stack:
            (alive,) = await _clients(stack, survivor, "alive")
            (doomed,) = await _clients(stack, victim, "doomed")
            a = await alive.session.request(JOIN, "room")
            d = await doomed.session.request(JOIN, "room")
            await _until(lambda: _same(alive.session.request(MEMBERS, "room"), sorted([a, d])), 5, "joined")
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            killed_at = time.monotonic()
            await _until(lambda: _same(alive.session.request(MEMBERS, "room"), [a]), LEASE + 1.5, "lease")
            assert time.monotonic() - killed_at <= LEASE + 1.5
            # Its sessions are not found (at once), not waited for.
            started = time.monotonic()
            assert await alive.session.request(ASK, [d, "whoami", 30]) == "SessionNotFound"
            assert time.monotonic() - started < 2

    _run(main)


@pytest.mark.parametrize("fault", ["restart", "client-kill"])
def test_redis_faults_recover_by_themselves(start_node: Any, redis_server: RedisServer, fault: str) -> None:
    sender_node, receiver_node = start_node("trio"), start_node("asyncio")

    async def main() -> None:
        async with AsyncExitStack() as stack:
            (sender,) = await _clients(stack, sender_node, "sender")
            (receiver,) = await _clients(stack, receiver_node, "receiver")
            await sender.session.request(JOIN, "room")
            r = await receiver.session.request(JOIN, "room")
            await _until(lambda: _has(sender.session.request(MEMBERS, "room"), r), 5, "joined")
            sent = 0
            refused = 0

            async def send(count: int) -> None:
                nonlocal sent, refused
                for _ in range(count):
                    try:
                        await sender.session.request(BROADCAST, ["room", f"m{sent + refused}"])
                        sent += 1
                    except RemoteError as exc:  # refused at once while Redis is down
                        assert exc.error == "HubUnavailable"
                        refused += 1
                    await asyncio.sleep(0.005)

            await send(20)
            if fault == "restart":
                redis_server.kill()
                down_at = time.monotonic()
                await send(10)  # nothing hangs: refused at once (or lost, and counted)
                started = time.monotonic()
                assert await sender.session.request(ASK, [r, "whoami", 30]) == "HubUnavailable"
                assert time.monotonic() - started < 2
                assert time.monotonic() - down_at < 5
                redis_server.start()
            else:
                task = asyncio.ensure_future(send(40))
                await asyncio.sleep(0.05)
                assert b":" in redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
                await task

            # Both nodes recover by themselves: connected, requests cross again.
            for client in (sender, receiver):
                await _until(lambda c=client: _connected(c), 10, "reconnected")
            await _until(
                lambda: _same(sender.session.request(ASK, [r, "whoami", 5]), "result:receiver"), 10, "routing"
            )
            await send(20)
            await _until(lambda: _true(receiver.chats[-1:] == [f"m{sent + refused - 1}"]), 5, "last message")
            received = len(receiver.chats)
            assert received == len(set(receiver.chats))  # no duplicates
            stats = await receiver.session.request(STATS, None)
            # Every message that did not arrive is counted as lost (a gap seen).
            assert sent - received <= stats["lost"], (sent, received, stats)
            if sent > received:
                await _until(lambda: _true(any("were lost" in x for x in receiver_node.log)), 2, "reported")

    _run(main)


async def _same(answer: Any, expected: Any) -> bool:
    return bool(await answer == expected)


async def _has(answer: Any, item: Any) -> bool:
    return item in await answer


async def _true(value: bool) -> bool:
    return value


async def _connected(client: Client) -> bool:
    stats = await client.session.request(STATS, None)
    return bool(stats["connected"])
