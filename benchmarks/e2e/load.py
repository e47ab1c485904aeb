"""The client's load generator: the same logic on asyncio (and uvloop) and on trio.

A scenario opens its connections, warms up, then measures: `in_flight` workers per
connection each send a request, wait for its answer, check it, and go again while the
budget lasts (a count of requests, or a deadline for starting new ones). The measured time
runs from the first request to the last answer. Server CPU time comes from the control
channel, read right before and right after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from .common import SCENARIOS_BY_NAME, Codec, Scenario, big_payloads, small_payload
from .control import ControlClient, Profiling, main_thread_wait
from .results import Budget, Plan, Sample, percentile
from .variants import PeerModule, Requester

Maker = Callable[[int], Any]


class Gate:
    """Says whether a worker may start one more request."""

    __slots__ = ("_deadline", "_left")

    def __init__(self, budget: Budget) -> None:
        self._left = budget.count
        self._deadline = time.perf_counter() + budget.seconds if budget.seconds is not None else 0.0

    def take(self) -> bool:
        """True (and counted) when one more request may start."""
        if self._left is None:
            return time.perf_counter() < self._deadline
        if self._left <= 0:
            return False
        self._left -= 1
        return True


class Tally:
    """What the workers of one run counted."""

    __slots__ = ("latencies", "next_seq", "requests", "wrong")

    def __init__(self, keep_latencies: bool) -> None:
        self.requests = 0
        self.wrong = 0
        self.next_seq = 0
        self.latencies: list[int] | None = [] if keep_latencies else None


def payload_maker(scenario: Scenario) -> Maker:
    """The data of request number `seq` in this scenario."""
    if scenario.payload_size is None:
        return small_payload
    payloads = big_payloads(scenario.payload_size)
    return lambda seq: payloads[seq % len(payloads)]


async def worker(request: Requester, gate: Gate, make: Maker, tally: Tally) -> None:
    """Send requests one after the other while the gate lets it, checking each answer."""
    latencies = tally.latencies
    perf_ns = time.perf_counter_ns
    while gate.take():
        tally.next_seq += 1
        data = make(tally.next_seq)
        started = perf_ns()
        result = await request(data)
        if latencies is not None:
            latencies.append(perf_ns() - started)
        if result == data:
            tally.requests += 1
        else:
            tally.wrong += 1


class Meter:
    """Reads the clocks around a measured run and turns a tally into a `Sample`."""

    def __init__(self, control: ControlClient | None, profiling: Profiling | None) -> None:
        self.control = control
        self.profiling = profiling
        self._server0: tuple[float, float | None] | None = None
        self._client0 = 0.0
        self._wait0: float | None = None
        self._wall0 = 0.0

    def start(self) -> None:
        """Right before the first measured request."""
        if self.control is not None:
            if self.profiling is not None:
                self.control.command("profile-start")
            self._server0 = self.control.cpu()
        if self.profiling is not None:
            self.profiling.start()
        self._wait0 = main_thread_wait()
        self._client0 = time.process_time()
        self._wall0 = time.perf_counter()

    def stop(self, sample: Sample, tally: Tally) -> None:
        """Right after the last measured answer: fill `sample` in."""
        sample.seconds = time.perf_counter() - self._wall0
        sample.client_cpu = time.process_time() - self._client0
        wait = main_thread_wait()
        if wait is not None and self._wait0 is not None:
            sample.client_wait = wait - self._wait0
        if self.profiling is not None:
            self.profiling.stop()
        if self.control is not None and self._server0 is not None:
            cpu, server_wait = self.control.cpu()
            sample.server_cpu = cpu - self._server0[0]
            if server_wait is not None and self._server0[1] is not None:
                sample.server_wait = server_wait - self._server0[1]
            if self.profiling is not None:
                self.control.command("profile-stop")
        sample.requests = tally.requests
        sample.wrong = tally.wrong
        if tally.latencies:
            ordered = sorted(tally.latencies)
            sample.p50_us = percentile(ordered, 0.50) / 1000
            sample.p99_us = percentile(ordered, 0.99) / 1000


def _sample(variant: str, plan: Plan) -> tuple[Scenario, Sample]:
    scenario = SCENARIOS_BY_NAME[plan.scenario]
    return scenario, Sample(variant=variant, scenario=scenario.name, payload_bytes=scenario.payload_size or 0)


# -- asyncio ---------------------------------------------------------------------------------


async def _drive_asyncio(
    requesters: list[Requester], in_flight: int, gate: Gate, make: Maker, tally: Tally
) -> None:
    if len(requesters) == 1 and in_flight == 1:
        await worker(requesters[0], gate, make, tally)
        return
    async with asyncio.TaskGroup() as group:
        for request in requesters:
            for _ in range(in_flight):
                group.create_task(worker(request, gate, make, tally))


async def run_asyncio(
    variant: str, peer: PeerModule, codec: Codec, port: int, plan: Plan, meter: Meter
) -> Sample:
    """Run one scenario on the running asyncio loop."""
    scenario, sample = _sample(variant, plan)
    make = payload_maker(scenario)
    async with asyncio.timeout(plan.timeout), AsyncExitStack() as stack:
        requesters = [
            await stack.enter_async_context(peer.connect(port, codec)) for _ in range(scenario.connections)
        ]
        await _drive_asyncio(requesters, scenario.in_flight, Gate(plan.warmup), make, Tally(False))
        tally = Tally(scenario.latency)
        meter.start()
        await _drive_asyncio(requesters, scenario.in_flight, Gate(plan.measure), make, tally)
        meter.stop(sample, tally)
    return sample


# -- trio ------------------------------------------------------------------------------------


async def _drive_trio(
    requesters: list[Requester], in_flight: int, gate: Gate, make: Maker, tally: Tally
) -> None:
    import trio  # noqa: PLC0415 - asyncio clients need not import it

    if len(requesters) == 1 and in_flight == 1:
        await worker(requesters[0], gate, make, tally)
        return
    async with trio.open_nursery() as nursery:
        for request in requesters:
            for _ in range(in_flight):
                nursery.start_soon(worker, request, gate, make, tally)


async def run_trio(
    variant: str, peer: PeerModule, codec: Codec, port: int, plan: Plan, meter: Meter
) -> Sample:
    """Run one scenario under trio."""
    import trio  # noqa: PLC0415 - asyncio clients need not import it

    scenario, sample = _sample(variant, plan)
    make = payload_maker(scenario)
    with trio.fail_after(plan.timeout):
        async with AsyncExitStack() as stack:
            requesters = [
                await stack.enter_async_context(peer.connect(port, codec))
                for _ in range(scenario.connections)
            ]
            await _drive_trio(requesters, scenario.in_flight, Gate(plan.warmup), make, Tally(False))
            tally = Tally(scenario.latency)
            meter.start()
            await _drive_trio(requesters, scenario.in_flight, Gate(plan.measure), make, tally)
            meter.stop(sample, tally)
    return sample
