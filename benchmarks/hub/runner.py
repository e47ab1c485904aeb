"""Running the benchmark: a Redis, two server processes per stack, the clients, the scenarios.

Both stacks' servers run side by side for the whole run, on the same `redis-server`; each
scenario and payload is measured for one stack then the other (the order alternates), so
that a change in the machine's load falls on both as much as it can. The clients are one
process (this one), half of them on each server process of the stack measured.

Fan-out is driven in a closed loop: the orchestrator keeps at most `window` deliveries in
flight (published, not yet received), so both stacks are measured at the same load and
neither is flooded into its queues; publish-to-receipt latency then also measures how
long each stack queues, and deliveries per second how fast it empties them.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from .common import HOST, STACKS, process_cpu, process_rss
from .redis import RedisServer
from .wire import Client, connect

NODES: Final = 2
SCENARIOS: Final = ("biggroup", "smallgroups", "direct", "request", "request16", "slow")
REQUESTS: Final = {"request": 1, "request16": 16}
"The request scenarios, and how many requests each keeps in flight."
TITLES: Final = {
    "biggroup": "one big group: every client in one group, broadcasts from both nodes",
    "smallgroups": "many small groups: groups of 4 (2 clients on each node), broadcast to each in turn",
    "direct": "direct send: a notification to one session on the other node, each in turn",
    "request": "cross-node request: a request to a client on the other node, answered, one at a time",
    "request16": "cross-node requests, 16 in flight: as `request`, from 16 callers at once",
    "slow": "one slow client: the big group, with one client that never reads",
}
CONNECT_TIMEOUT: Final = 30.0
ANSWER_LIMIT: Final = 16 << 20
"Bytes of one answer line from a server's control port (a request scenario's latencies)."
STALL_TIMEOUT: Final = 5.0
"Seconds without any delivery before a run counts as stalled (bounds every wait)."
DRAIN_TIMEOUT: Final = 3.0
"Seconds to wait for the deliveries in flight once publishing stops; what is missing is lost."


@dataclass
class Settings:
    """What to run."""

    stacks: list[str] = field(default_factory=lambda: list(STACKS))
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))
    payloads: list[int] = field(default_factory=lambda: [256, 4096])
    clients: int = 100
    seconds: float = 2.0
    warmup: float = 0.5
    window: int = 2000
    "Deliveries in flight at most (published, not yet received)."
    lanes: int = 4
    "Publishing tasks per server process (each sends its messages in order)."
    group_size: int = 4
    requests: int = 20000
    "Cross-node requests per run at most (also bounded by `seconds`)."
    loop: str = "uvloop"
    redis_server: str | None = None

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run: tiny counts, a fraction of a second per scenario."""
        return cls(payloads=[256], clients=8, seconds=0.3, warmup=0.1, window=200, requests=200)


@dataclass
class Result:
    """One stack, one scenario, one payload size."""

    stack: str
    scenario: str
    payload: int
    error: str | None = None
    expected: int = 0
    "Deliveries owed to the clients that read (every fan-out message times its recipients)."
    received: int = 0
    "Distinct deliveries those clients got."
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    rate: float = 0.0
    "Deliveries (or request round trips) per second, in the measured window."
    p50_ms: float | None = None
    p99_ms: float | None = None
    measured: float = 0.0
    server_cpu: list[float] = field(default_factory=list)
    "CPU seconds of each server process during the measured window."
    redis_cpu: float | None = None
    publish_errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A plain dict (for `--json`)."""
        return dict(self.__dict__)


@dataclass
class Report:
    """Every result of a run, with what was run."""

    settings: Settings
    results: list[Result]
    started: float
    wall: float

    def get(self, stack: str, scenario: str, payload: int) -> Result | None:
        """The result of a cell, if it ran."""
        for result in self.results:
            if (result.stack, result.scenario, result.payload) == (stack, scenario, payload):
                return result
        return None


class Server:
    """A server process of the benchmark (`benchmarks.hub.server`)."""

    def __init__(self, stack: str, node: int) -> None:
        self.stack = stack
        self.node = node
        self.process: asyncio.subprocess.Process | None = None
        self.port = self.control = self.pid = 0
        self._publisher: asyncio.StreamWriter | None = None

    async def start(self, redis_url: str, loop: str) -> None:
        """Start it and wait until it listens.

        Raises:
            RuntimeError: it could not serve.
        """
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.hub.server",
            self.stack,
            str(self.node),
            redis_url,
            "--loop",
            loop,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), CONNECT_TIMEOUT)
        info = orjson.loads(line) if line else {"error": "exited"}
        if "error" in info:
            raise RuntimeError(f"{self.stack} server {self.node}: {info['error']}")
        self.port, self.control, self.pid = int(info["port"]), int(info["control"]), int(info["pid"])
        _, self._publisher = await asyncio.open_connection(HOST, self.control)

    def publish(self, command: dict[str, Any]) -> None:
        """Send a `publish` command (not answered)."""
        assert self._publisher is not None
        self._publisher.write(orjson.dumps({"op": "publish", **command}) + b"\n")

    async def ask(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """A command that is answered, on a connection of its own."""
        # An answer is one line, the latencies of up to `Settings.requests` round trips.
        reader, writer = await asyncio.open_connection(HOST, self.control, limit=ANSWER_LIMIT)
        try:
            writer.write(orjson.dumps(command) + b"\n")
            line = await asyncio.wait_for(reader.readline(), timeout)
            answer: dict[str, Any] = orjson.loads(line)
            return answer
        finally:
            writer.close()

    async def stop(self) -> None:
        """Close its stdin (it exits) and wait a little; kill it if it lingers."""
        if self._publisher is not None:
            self._publisher.close()
        if self.process is None or self.process.returncode is not None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class Tracker:
    """What the clients received: counts, order, duplicates and latencies."""

    def __init__(self, clients: int, slow: set[int], window: int) -> None:
        self.seen: list[set[int]] = [set() for _ in range(clients)]
        self.last: list[dict[int, int]] = [{} for _ in range(clients)]
        self.expected = [0] * clients
        self.slow = slow
        self.window = window
        self.outstanding = 0
        self.duplicates = self.reordered = self.in_window = 0
        self.latencies = array("d")
        self.measure_start = self.measure_end = float("inf")
        self.low_water = 0
        self.progress = asyncio.Event()

    def on_data(self, index: int, data: Any, now: float) -> None:
        """One fan-out message received by client `index` at `now`."""
        seq = data["s"]
        stream = (data["n"] << 8) | data["l"]
        key = (stream << 40) | seq
        seen = self.seen[index]
        if key in seen:
            self.duplicates += 1
            return
        seen.add(key)
        last = self.last[index]
        if seq < last.get(stream, -1):
            self.reordered += 1
        else:
            last[stream] = seq
        if index in self.slow:
            return
        self.outstanding -= 1
        if self.measure_start <= now < self.measure_end:
            self.in_window += 1
        sent = data["t"]
        if self.measure_start <= sent < self.measure_end:
            self.latencies.append(now - sent)
        if self.outstanding <= self.low_water:
            self.progress.set()

    def lost(self) -> tuple[int, int]:
        """Deliveries expected and distinct deliveries received, clients that read only."""
        expected = received = 0
        for index, owed in enumerate(self.expected):
            if index not in self.slow:
                expected += owed
                received += len(self.seen[index])
        return expected, received


def percentile(values: array[float] | list[float], fraction: float) -> float | None:
    """The `fraction` quantile in milliseconds (nearest rank), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


class Run:
    """One cell: a stack, a scenario, a payload size."""

    def __init__(self, settings: Settings, servers: list[Server], redis: RedisServer, number: int) -> None:
        self.settings = settings
        self.servers = servers
        self.redis = redis
        self.number = number
        self.clients: list[Client] = []

    def _node_of(self, index: int) -> int:
        return index % NODES

    def _groups(self, scenario: str, index: int) -> list[str]:
        if scenario in ("biggroup", "slow"):
            return [f"big-{self.number}"]
        if scenario == "smallgroups":
            return [f"small-{self.number}-{index // self.settings.group_size}"]
        return []

    async def _connect(self, stack: str, scenario: str, tracker: Tracker) -> list[str]:
        slow = tracker.slow
        self.clients = await asyncio.gather(
            *(
                connect(
                    i,
                    stack,
                    self.servers[self._node_of(i)].port,
                    self._groups(scenario, i),
                    tracker.on_data,
                    receive_buffer=4096 if i in slow else 0,
                )
                for i in range(self.settings.clients)
            )
        )
        return list(await asyncio.wait_for(asyncio.gather(*(c.ready for c in self.clients)), CONNECT_TIMEOUT))

    def _cpu(self) -> tuple[list[float | None], float | None]:
        return [process_cpu(s.pid) for s in self.servers], self.redis.cpu()

    def _charge(
        self,
        result: Result,
        before: tuple[list[float | None], float | None],
        after: tuple[list[float | None], float | None],
    ) -> None:
        result.server_cpu = [
            (b2 - b1) if b1 is not None and b2 is not None else 0.0
            for b1, b2 in zip(before[0], after[0], strict=True)
        ]
        if before[1] is not None and after[1] is not None:
            result.redis_cpu = after[1] - before[1]

    async def run(self, stack: str, scenario: str, size: int) -> Result:
        """Measure one cell; a failure is recorded in the result, never raised."""
        result = Result(stack, scenario, size)
        try:
            if scenario in REQUESTS:
                await self._requests(result)
            else:
                await self._fan_out(result)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            for client in self.clients:
                client.abort()
            self.clients = []
            await asyncio.sleep(0.2)  # the servers see the clients go before the next run
        return result

    def _plan(
        self, scenario: str, ids: list[str], slow: set[int]
    ) -> list[tuple[Server, list[str], list[list[int]]]]:
        """What one command from each node publishes: targets, and who receives each target."""
        settings = self.settings
        readers = [i for i in range(settings.clients) if i not in slow]
        plans = []
        for node, server in enumerate(self.servers):
            if scenario in ("biggroup", "slow"):
                targets, receivers = [f"big-{self.number}"], [readers]
            elif scenario == "smallgroups":
                count = (settings.clients + settings.group_size - 1) // settings.group_size
                targets = [f"small-{self.number}-{g}" for g in range(count)]
                size = settings.group_size
                receivers = [
                    list(range(g * size, min(settings.clients, (g + 1) * size))) for g in range(count)
                ]
            else:  # direct: the sessions of the other node
                others = [i for i in range(settings.clients) if self._node_of(i) != node]
                targets, receivers = [ids[i] for i in others], [[i] for i in others]
            plans.append((server, targets, receivers))
        return plans

    async def _fan_out(self, result: Result) -> None:
        settings = self.settings
        slow = {1} if result.scenario == "slow" and settings.clients > 2 else set()
        tracker = Tracker(settings.clients, slow, settings.window)
        ids = await self._connect(result.stack, result.scenario, tracker)
        for index in slow:
            transport = self.clients[index].transport
            assert transport is not None
            transport.pause_reading()
        plans = self._plan(result.scenario, ids, slow)
        # Each command sends every target of its node `rounds` times: about 128 deliveries
        # (at most half the window, so that two commands are always in flight).
        per_round = sum(len(r) for r in plans[0][2])
        rounds = max(1, min(128, settings.window // 2) // max(1, per_round))
        per_command = per_round * rounds
        tracker.low_water = max(0, settings.window - per_command)
        rss_before = process_rss(self.servers[1].pid)

        loop = asyncio.get_running_loop()
        started = time.monotonic()
        tracker.measure_start = started + settings.warmup
        tracker.measure_end = tracker.measure_start + settings.seconds
        snapshots: list[tuple[list[float | None], float | None]] = []
        handles = [
            loop.call_later(tracker.measure_start - started, lambda: snapshots.append(self._cpu())),
            loop.call_later(tracker.measure_end - started, lambda: snapshots.append(self._cpu())),
        ]
        seqs: dict[tuple[int, int], int] = {}
        commands = 0
        try:
            while time.monotonic() < tracker.measure_end:
                while tracker.outstanding == 0 or tracker.outstanding + per_command <= settings.window:
                    node = commands % NODES
                    lane = (commands // NODES) % settings.lanes
                    server, targets, receivers = plans[node]
                    seq = seqs.get((node, lane), 0)
                    count = len(targets) * rounds
                    seqs[(node, lane)] = seq + count
                    server.publish(
                        {
                            "kind": "direct" if result.scenario == "direct" else "broadcast",
                            "lane": lane,
                            "targets": targets,
                            "seq": seq,
                            "count": count,
                            "size": result.payload,
                        }
                    )
                    for group in receivers:
                        for index in group:
                            tracker.expected[index] += rounds
                    tracker.outstanding += per_command
                    commands += 1
                tracker.progress.clear()
                before = tracker.outstanding
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracker.progress.wait(), STALL_TIMEOUT)
                if tracker.outstanding >= before:
                    result.error = f"stalled: nothing delivered for {STALL_TIMEOUT:g} s"
                    break
            tracker.low_water = 0
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while tracker.outstanding > 0 and time.monotonic() < deadline:
                tracker.progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracker.progress.wait(), deadline - time.monotonic())
        finally:
            for handle in handles:
                handle.cancel()
        if len(snapshots) == 2:
            self._charge(result, snapshots[0], snapshots[1])
        result.measured = settings.seconds
        result.expected, result.received = tracker.lost()
        result.lost = max(0, result.expected - result.received)
        result.duplicates, result.reordered = tracker.duplicates, tracker.reordered
        result.rate = tracker.in_window / settings.seconds
        result.p50_ms = percentile(tracker.latencies, 0.5)
        result.p99_ms = percentile(tracker.latencies, 0.99)
        result.publish_errors = await self._publish_errors(result)
        if slow:
            await self._slow_fate(result, tracker, slow, rss_before)

    async def _publish_errors(self, result: Result) -> int:
        errors = 0
        for server in self.servers:
            stats = await server.ask({"op": "stats"}, 10)
            errors += int(stats.get("errors", 0))
            if stats.get("first_error"):
                result.extra.setdefault("first_publish_error", stats["first_error"])
        return errors

    async def _slow_fate(
        self, result: Result, tracker: Tracker, slow: set[int], rss_before: int | None
    ) -> None:
        """What became of the slow client: read what waits for it, and how it ended."""
        rss_after = process_rss(self.servers[1].pid)
        (index,) = slow
        client = self.clients[index]
        owed = sum(tracker.expected[i] for i in range(self.settings.clients) if i not in slow)
        owed //= max(1, self.settings.clients - len(slow))
        assert client.transport is not None
        client.transport.resume_reading()
        last, quiet_since = -1, time.monotonic()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < deadline and not client.ended.done():
            if client.received != last:
                last, quiet_since = client.received, time.monotonic()
            elif time.monotonic() - quiet_since > 0.5:
                break
            await asyncio.sleep(0.05)
        code = client.ended.result() if client.ended.done() else None
        result.extra.update(
            slow_published=owed,
            slow_received=client.received,
            slow_closed=client.ended.done(),
            slow_close_code=code,
            server_rss_growth_kib=(rss_after - rss_before) if rss_after and rss_before else None,
        )

    async def _requests(self, result: Result) -> None:
        settings = self.settings
        tracker = Tracker(settings.clients, set(), settings.window)
        ids = await self._connect(result.stack, result.scenario, tracker)
        others = [ids[i] for i in range(settings.clients) if self._node_of(i) == 1]
        # Warm up (connections, caches), then measure.
        await self.servers[0].ask(
            {
                "op": "request",
                "targets": others,
                "count": 100,
                "seconds": settings.warmup,
                "size": result.payload,
                "concurrency": REQUESTS[result.scenario],
            },
            settings.warmup + 30,
        )
        before = self._cpu()
        answer = await self.servers[0].ask(
            {
                "op": "request",
                "targets": others,
                "count": settings.requests,
                "seconds": settings.seconds,
                "size": result.payload,
                "concurrency": REQUESTS[result.scenario],
            },
            settings.seconds + 30,
        )
        self._charge(result, before, self._cpu())
        latencies: list[float] = answer["latencies"]
        result.measured = float(answer["elapsed"])
        result.expected = len(latencies) + int(answer["errors"])
        result.received = len(latencies)
        result.lost = int(answer["errors"])
        result.rate = len(latencies) / result.measured if result.measured > 0 else 0.0
        result.p50_ms = percentile(latencies, 0.5)
        result.p99_ms = percentile(latencies, 0.99)
        result.extra.update(wrong_answers=answer["wrong"], first_error=answer["first_error"])
        if latencies:
            result.extra["mean_ms"] = statistics.fmean(latencies) * 1000


async def run_async(settings: Settings, progress: Callable[[str], None]) -> Report:
    """Run every selected cell; the caller owns nothing afterwards (all stopped)."""
    started = time.time()
    clock = time.monotonic()
    redis = RedisServer(settings.redis_server)
    redis.start()
    servers: dict[str, list[Server]] = {
        stack: [Server(stack, n) for n in range(NODES)] for stack in settings.stacks
    }
    results: list[Result] = []
    try:
        await asyncio.gather(
            *(s.start(redis.url, settings.loop) for group in servers.values() for s in group)
        )
        number = 0
        for scenario in settings.scenarios:
            for size in settings.payloads:
                order = settings.stacks if number % 2 == 0 else list(reversed(settings.stacks))
                for stack in order:
                    number += 1
                    result = await Run(settings, servers[stack], redis, number).run(stack, scenario, size)
                    progress(_line(result))
                    results.append(result)
    finally:
        await asyncio.gather(*(s.stop() for group in servers.values() for s in group), return_exceptions=True)
        redis.stop()
    return Report(settings, results, started, time.monotonic() - clock)


def _line(result: Result) -> str:
    p50 = "-" if result.p50_ms is None else f"{result.p50_ms:.2f}"
    p99 = "-" if result.p99_ms is None else f"{result.p99_ms:.2f}"
    text = (
        f"{result.scenario:11} {result.payload:5} B {result.stack:11} {result.rate:10,.0f}/s "
        f"p50 {p50} ms p99 {p99} ms lost {result.lost} dup {result.duplicates} reord {result.reordered}"
    )
    if result.error:
        text += f"  ERROR {result.error}"
    return text


def run(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> Report:
    """`run_async` on the selected loop (uvloop or asyncio's own)."""
    factory = None
    if settings.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_async(settings, progress))
