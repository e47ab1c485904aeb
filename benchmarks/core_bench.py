"""Core benchmark: request/response round trips per second through a `Connection` pair.

No sockets: the bytes one end writes are handed to the other in memory. Three variants run
side by side, each with one request in flight at a time (latency-bound) and with a batch of
requests in flight (send the batch, deliver its bytes in one piece, answer every request,
deliver the answers back in one piece):

- **typed**: `Method("add", request=AddArgs, response=int, error=str)`, the server built
  with `methods=[add]`;
- **untyped**: the method name and raw dicts (`methods=None`);
- **raw wsproto**: the same exchange written directly on two `wsproto.WSConnection`s with
  orjson, hand-written id matching and the very bytes session-rs puts on the wire: the
  floor this layer adds to.

Run `python -m benchmarks.core_bench --help` for the options; `--write` puts the table
(and with `--profile`, the profile of the typed variant) into `benchmarks/CORE-RESULTS.md`.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import attrs
import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage

from benchmarks.builds import PURE_ENV, compiled_build, current_build
from session_core import (
    Connection,
    HandshakeAccepted,
    Method,
    RequestReceived,
    ResponseReceived,
    UpgradeRequested,
)

RESULTS_FILE = Path(__file__).with_name("CORE-RESULTS.md")
HOST = "bench.test:80"
NOW = 0.0
DEFAULT_ROUNDS = 5
DEFAULT_COUNT = 15_000
SLICES = 10
DEFAULT_BATCH = 100
QUICK_ROUNDS = 2
QUICK_COUNT = 200
PACKAGES = ("wsproto", "orjson", "cattrs", "attrs", "h11")
TARGET_RATIO = 1.5
"The issue's target: typed costs at most this many times raw wsproto per round trip."


@attrs.frozen
class AddArgs:
    """The request data of `add`."""

    a: int
    b: int


ADD = Method("add", request=AddArgs, response=int, error=str)


class BenchmarkError(Exception):
    """An exchange went wrong: an event or a message that should not have come."""


def _unexpected(what: object) -> BenchmarkError:
    return BenchmarkError(f"unexpected: {what!r}"[:300])


def expected_total(count: int) -> int:
    """The sum of the answers to `add(i, 1)` for `i` in `range(count)`."""
    return count * (count - 1) // 2 + count


@attrs.frozen
class Tally:
    """What the client got back from one run of round trips."""

    answered: int
    total: int
    "The sum of the results."
    wrong: int
    "Results that differ from their request's `a + b`."

    def correct_for(self, count: int) -> bool:
        """Whether all `count` requests got their right answer."""
        return self.answered == count and self.wrong == 0 and self.total == expected_total(count)


class Variant(Protocol):
    """One way of doing the exchange; `run` does `count` round trips of `add(i, 1)`."""

    name: str

    def run(self, count: int, in_flight: int) -> Tally: ...


# -- session_core ---------------------------------------------------------------------


def session_pair(methods: Iterable[Method[Any, Any, Any]] | None) -> tuple[Connection, Connection]:
    """A client and a server `Connection`, handshake done in memory."""
    client = Connection.client(HOST, "/", now=NOW)
    server = Connection.server(now=NOW, methods=methods)
    server.receive_data(client.data_to_send(), NOW)
    if not any(isinstance(event, UpgradeRequested) for event in server.events()):
        raise BenchmarkError("the server got no upgrade request")
    server.accept(now=NOW)
    client.receive_data(server.data_to_send(), NOW)
    if not any(isinstance(event, HandshakeAccepted) for event in client.events()):
        raise BenchmarkError("the client's handshake failed")
    return client, server


class TypedVariant:
    """`send_request(add, AddArgs(i, 1))` on a server with `methods=[add]`."""

    name = "typed"

    def __init__(self) -> None:
        self.client, self.server = session_pair([ADD])

    def run(self, count: int, in_flight: int) -> Tally:
        """`count` round trips, `in_flight` at a time."""
        return self._one_by_one(count) if in_flight == 1 else self._batched(count, in_flight)

    def _one_by_one(self, count: int) -> Tally:
        client, server = self.client, self.server
        answered = total = wrong = 0
        for i in range(count):
            request_id = client.send_request(ADD, AddArgs(i, 1))
            server.receive_data(client.data_to_send(), NOW)
            for event in server.events():
                if type(event) is not RequestReceived:
                    raise _unexpected(event)
                args = event.data
                server.send_response(event.request_id, args.a + args.b)
            client.receive_data(server.data_to_send(), NOW)
            for answer in client.events():
                if type(answer) is not ResponseReceived or answer.request_id != request_id:
                    raise _unexpected(answer)
                result = answer.result
                answered += 1
                total += result
                wrong += result != i + 1
        return Tally(answered, total, wrong)

    def _batched(self, count: int, in_flight: int) -> Tally:
        client, server = self.client, self.server
        answered = total = wrong = 0
        expected: dict[int, int] = {}
        for start in range(0, count, in_flight):
            for i in range(start, min(start + in_flight, count)):
                expected[client.send_request(ADD, AddArgs(i, 1))] = i + 1
            server.receive_data(client.data_to_send(), NOW)
            # Until no event is left: answers may resume reading input held back.
            while events := server.events():
                for event in events:
                    if type(event) is not RequestReceived:
                        raise _unexpected(event)
                    args = event.data
                    server.send_response(event.request_id, args.a + args.b)
            client.receive_data(server.data_to_send(), NOW)
            for answer in client.events():
                if type(answer) is not ResponseReceived:
                    raise _unexpected(answer)
                result = answer.result
                answered += 1
                total += result
                wrong += result != expected.pop(answer.request_id)
        if expected:
            raise BenchmarkError(f"{len(expected)} requests got no answer")
        return Tally(answered, total, wrong)


class UntypedVariant:
    """`send_request("add", {"a": i, "b": 1})` on a server with `methods=None`."""

    name = "untyped"

    def __init__(self) -> None:
        self.client, self.server = session_pair(None)

    def run(self, count: int, in_flight: int) -> Tally:
        """`count` round trips, `in_flight` at a time."""
        return self._one_by_one(count) if in_flight == 1 else self._batched(count, in_flight)

    def _one_by_one(self, count: int) -> Tally:
        client, server = self.client, self.server
        answered = total = wrong = 0
        for i in range(count):
            request_id = client.send_request("add", {"a": i, "b": 1})
            server.receive_data(client.data_to_send(), NOW)
            for event in server.events():
                if type(event) is not RequestReceived or event.method != "add":
                    raise _unexpected(event)
                data = event.data
                server.send_response(event.request_id, data["a"] + data["b"])
            client.receive_data(server.data_to_send(), NOW)
            for answer in client.events():
                if type(answer) is not ResponseReceived or answer.request_id != request_id:
                    raise _unexpected(answer)
                result = answer.result
                answered += 1
                total += result
                wrong += result != i + 1
        return Tally(answered, total, wrong)

    def _batched(self, count: int, in_flight: int) -> Tally:
        client, server = self.client, self.server
        answered = total = wrong = 0
        expected: dict[int, int] = {}
        for start in range(0, count, in_flight):
            for i in range(start, min(start + in_flight, count)):
                expected[client.send_request("add", {"a": i, "b": 1})] = i + 1
            server.receive_data(client.data_to_send(), NOW)
            # Until no event is left: answers may resume reading input held back.
            while events := server.events():
                for event in events:
                    if type(event) is not RequestReceived or event.method != "add":
                        raise _unexpected(event)
                    data = event.data
                    server.send_response(event.request_id, data["a"] + data["b"])
            client.receive_data(server.data_to_send(), NOW)
            for answer in client.events():
                if type(answer) is not ResponseReceived:
                    raise _unexpected(answer)
                result = answer.result
                answered += 1
                total += result
                wrong += result != expected.pop(answer.request_id)
        if expected:
            raise BenchmarkError(f"{len(expected)} requests got no answer")
        return Tally(answered, total, wrong)


# -- raw wsproto ----------------------------------------------------------------------


def raw_pair() -> tuple[WSConnection, WSConnection]:
    """A wsproto client and server, handshake done in memory."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host=HOST, target="/")))
    if not any(isinstance(event, Request) for event in server.events()):
        raise BenchmarkError("the raw server got no upgrade request")
    client.receive_data(server.send(AcceptConnection()))
    if not any(isinstance(event, AcceptConnection) for event in client.events()):
        raise BenchmarkError("the raw client's handshake failed")
    return client, server


def raw_request_text(request_id: int, a: int, b: int) -> str:
    """A request as session-rs writes it: compact JSON, `type` first."""
    return orjson.dumps(
        {"type": "request", "id": request_id, "method": "add", "data": {"a": a, "b": b}}
    ).decode()


def raw_response_text(request_id: int, result: int) -> str:
    """A response as session-rs writes it."""
    return orjson.dumps({"type": "response", "id": request_id, "result": result}).decode()


class RawVariant:
    """The floor: the same messages straight on wsproto, ids matched by hand.

    The JSON is built inline (not through `raw_request_text`) so that the floor pays no
    function call it does not need.
    """

    name = "raw wsproto"

    def __init__(self) -> None:
        self.client, self.server = raw_pair()
        self.pending: dict[int, int] = {}
        self.next_id = 1

    def run(self, count: int, in_flight: int) -> Tally:
        """`count` round trips, `in_flight` at a time."""
        return self._one_by_one(count) if in_flight == 1 else self._batched(count, in_flight)

    def _one_by_one(self, count: int) -> Tally:
        client, server, pending = self.client, self.server, self.pending
        dumps, loads = orjson.dumps, orjson.loads
        answered = total = wrong = 0
        next_id = self.next_id
        for i in range(count):
            request_id = next_id
            next_id += 1
            pending[request_id] = i + 1
            text = dumps({"type": "request", "id": request_id, "method": "add", "data": {"a": i, "b": 1}})
            server.receive_data(client.send(Message(data=text.decode())))
            for event in server.events():
                if type(event) is not TextMessage or not event.message_finished:
                    raise _unexpected(event)
                request = loads(event.data)
                if request["type"] != "request" or request["method"] != "add":
                    raise _unexpected(request)
                data = request["data"]
                text = dumps({"type": "response", "id": request["id"], "result": data["a"] + data["b"]})
                client.receive_data(server.send(Message(data=text.decode())))
            for answer in client.events():
                if type(answer) is not TextMessage or not answer.message_finished:
                    raise _unexpected(answer)
                response = loads(answer.data)
                if response["type"] != "response":
                    raise _unexpected(response)
                expected = pending.pop(response["id"], None)
                if expected is None:
                    raise _unexpected(response)
                result = response["result"]
                answered += 1
                total += result
                wrong += result != expected
        self.next_id = next_id
        return Tally(answered, total, wrong)

    def _batched(self, count: int, in_flight: int) -> Tally:
        client, server, pending = self.client, self.server, self.pending
        dumps, loads = orjson.dumps, orjson.loads
        answered = total = wrong = 0
        next_id = self.next_id
        for start in range(0, count, in_flight):
            out = []
            for i in range(start, min(start + in_flight, count)):
                request_id = next_id
                next_id += 1
                pending[request_id] = i + 1
                text = dumps({"type": "request", "id": request_id, "method": "add", "data": {"a": i, "b": 1}})
                out.append(client.send(Message(data=text.decode())))
            server.receive_data(b"".join(out))
            out.clear()
            for event in server.events():
                if type(event) is not TextMessage or not event.message_finished:
                    raise _unexpected(event)
                request = loads(event.data)
                if request["type"] != "request" or request["method"] != "add":
                    raise _unexpected(request)
                data = request["data"]
                text = dumps({"type": "response", "id": request["id"], "result": data["a"] + data["b"]})
                out.append(server.send(Message(data=text.decode())))
            client.receive_data(b"".join(out))
            for answer in client.events():
                if type(answer) is not TextMessage or not answer.message_finished:
                    raise _unexpected(answer)
                response = loads(answer.data)
                if response["type"] != "response":
                    raise _unexpected(response)
                expected = pending.pop(response["id"], None)
                if expected is None:
                    raise _unexpected(response)
                result = response["result"]
                answered += 1
                total += result
                wrong += result != expected
        if pending:
            raise BenchmarkError(f"{len(pending)} requests got no answer")
        self.next_id = next_id
        return Tally(answered, total, wrong)


VARIANTS: tuple[Callable[[], Variant], ...] = (TypedVariant, UntypedVariant, RawVariant)
RAW = RawVariant.name
_NAMES = (TypedVariant.name, UntypedVariant.name, RawVariant.name)


def wire_texts() -> dict[str, tuple[str, str]]:
    """The texts of a request and of its response as session_core and the floor write them.

    A session client talks to a raw wsproto server and a raw client to a session server,
    so each side sees the other's exact text. Returns `{"request": (session, raw),
    "response": (session, raw)}`; equal pairs mean the floor puts the same bytes on the
    wire.
    """
    client = Connection.client(HOST, "/", now=NOW)
    raw_server = WSConnection(ConnectionType.SERVER)
    raw_server.receive_data(client.data_to_send())
    list(raw_server.events())
    client.receive_data(raw_server.send(AcceptConnection()), NOW)
    client.events()
    request_id = client.send_request(ADD, AddArgs(2, 3))
    raw_server.receive_data(client.data_to_send())
    sent_request = [e.data for e in raw_server.events() if isinstance(e, TextMessage)]

    raw_client = WSConnection(ConnectionType.CLIENT)
    server = Connection.server(now=NOW, methods=[ADD])
    server.receive_data(raw_client.send(Request(host=HOST, target="/")), NOW)
    server.events()
    server.accept(now=NOW)
    raw_client.receive_data(server.data_to_send())
    list(raw_client.events())
    server.receive_data(raw_client.send(Message(data=raw_request_text(request_id, 2, 3))), NOW)
    for event in server.events():
        if isinstance(event, RequestReceived):
            server.send_response(event.request_id, event.data.a + event.data.b)
    raw_client.receive_data(server.data_to_send())
    sent_response = [e.data for e in raw_client.events() if isinstance(e, TextMessage)]
    return {
        "request": ("".join(sent_request), raw_request_text(request_id, 2, 3)),
        "response": ("".join(sent_response), raw_response_text(request_id, 5)),
    }


# -- measuring ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Settings:
    """What to run."""

    rounds: int = DEFAULT_ROUNDS
    "Timed rounds; each times every variant in every mode."
    count: int = DEFAULT_COUNT
    "Round trips per variant, mode and round (rounded down to whole slices)."
    batch: int = DEFAULT_BATCH
    "Requests in flight in the batched mode."

    @classmethod
    def quick(cls) -> Settings:
        """A tiny smoke run: a few hundred round trips per variant and mode."""
        return cls(rounds=QUICK_ROUNDS, count=QUICK_COUNT)

    @property
    def slicing(self) -> tuple[int, int]:
        """How each round is cut: (slices, round trips per slice), each slice at least a batch."""
        slices = max(1, min(SLICES, self.count // self.batch))
        return slices, self.count // slices

    @property
    def modes(self) -> tuple[int, ...]:
        """Requests in flight, per mode."""
        return (1, self.batch)


@attrs.frozen(kw_only=True)
class Measurement:
    """The timed rounds of one variant in one mode."""

    variant: str
    in_flight: int
    count: int
    "Round trips per round."
    slice_count: int
    "Round trips per slice (one call of `Variant.run`)."
    seconds: tuple[float, ...]
    "The time of each round."
    tallies: tuple[Tally, ...]
    "The answers of each slice."

    @property
    def rates(self) -> list[float]:
        """Round trips per second, per round."""
        return [self.count / s for s in self.seconds]

    @property
    def seconds_per_round_trip(self) -> float:
        """The median time of one round trip."""
        return statistics.median(self.seconds) / self.count

    @property
    def correct(self) -> bool:
        """Whether every slice got every answer right."""
        expected = self.count // self.slice_count * len(self.seconds)
        return len(self.tallies) == expected and all(t.correct_for(self.slice_count) for t in self.tallies)


@attrs.frozen(kw_only=True)
class Report:
    """A whole run: every measurement, and where it ran."""

    settings: Settings
    measurements: tuple[Measurement, ...]
    environment: tuple[tuple[str, str], ...]
    elapsed: float
    build: str = "pure, Python masking"
    "What session_core ran: its build (`session_core.COMPILED`) and its masking."

    def get(self, variant: str, in_flight: int) -> Measurement:
        """The measurement of `variant` with `in_flight` requests in flight."""
        for m in self.measurements:
            if m.variant == variant and m.in_flight == in_flight:
                return m
        raise KeyError((variant, in_flight))

    def ratio(self, m: Measurement) -> float:
        """`m`'s time per round trip over raw wsproto's in the same mode: the median over
        rounds of the ratio within each round (runs close in time see the same machine).
        """
        raw = self.get(RAW, m.in_flight)
        return statistics.median(ours / floor for ours, floor in zip(m.seconds, raw.seconds, strict=True))

    @property
    def correct(self) -> bool:
        """Whether every variant got every answer right."""
        return all(m.correct for m in self.measurements)


def _time(variant: Variant, count: int, in_flight: int) -> tuple[float, Tally]:
    start = time.perf_counter()
    tally = variant.run(count, in_flight)
    return time.perf_counter() - start, tally


def run(settings: Settings, progress: Callable[[str], None] | None = None) -> Report:
    """Measure every variant in every mode.

    Each round times `settings.count` round trips of every variant in every mode, in
    slices that take turns (typed, untyped, raw, typed, ...): on a shared machine whose
    speed drifts, the variants of a round see the same drift, and their ratio holds.
    """
    for name, (ours, raw) in wire_texts().items():
        if ours != raw:
            raise BenchmarkError(f"the floor's {name} differs from session_core's: {raw!r} != {ours!r}")
    started = time.perf_counter()
    variants = [factory() for factory in VARIANTS]
    for variant in variants:
        for in_flight in settings.modes:
            variant.run(min(settings.count, 2_000), in_flight)
    slices, per_slice = settings.slicing
    seconds: dict[tuple[str, int], list[float]] = {}
    tallies: dict[tuple[str, int], list[Tally]] = {}
    for round_no in range(settings.rounds):
        for in_flight in settings.modes:
            # Alternate the order, so that no variant always goes first.
            order = variants if round_no % 2 == 0 else variants[::-1]
            spent = dict.fromkeys([v.name for v in order], 0.0)
            gc.collect()
            for _ in range(slices):
                for variant in order:
                    elapsed, tally = _time(variant, per_slice, in_flight)
                    spent[variant.name] += elapsed
                    tallies.setdefault((variant.name, in_flight), []).append(tally)
            for name, total in spent.items():
                seconds.setdefault((name, in_flight), []).append(total)
        if progress is not None:
            progress(f"round {round_no + 1}/{settings.rounds} done")
    measurements = tuple(
        Measurement(
            variant=name,
            in_flight=in_flight,
            count=slices * per_slice,
            slice_count=per_slice,
            seconds=tuple(seconds[name, in_flight]),
            tallies=tuple(tallies[name, in_flight]),
        )
        for name, in_flight in sorted(seconds, key=lambda key: _sort_key(*key))
    )
    return Report(
        settings=settings,
        measurements=measurements,
        environment=environment(),
        elapsed=time.perf_counter() - started,
        build=current_build(),
    )


def run_pure_build(argv: Sequence[str]) -> str:
    """The results table of the same run in a process forced to the pure-Python build."""
    env = dict(os.environ) | {PURE_ENV: "1"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.core_bench", *argv, "--builds", "current"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        check=False,
    )
    if out.returncode not in (0, 1) or "| Variant |" not in out.stdout:
        raise BenchmarkError(f"the pure build's run failed: {out.stderr.strip()[-500:]}")
    return out.stdout


def _sort_key(name: str, in_flight: int) -> tuple[int, int]:
    return in_flight, _NAMES.index(name)


def environment() -> tuple[tuple[str, str], ...]:
    """Python, package versions and the machine."""
    versions = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return (
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Packages", versions),
        ("Machine", f"{platform.platform()}, {platform.machine()}, {_cpu_model()}, {os.cpu_count()} CPUs"),
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -- profiling ------------------------------------------------------------------------

FuncKey = tuple[str, int, str]
"A function in `pstats`: (file, line, name)."

WSPROTO = "WebSocket framing in wsproto"
FRAMING = "WebSocket framing in session_core/_ws.py"
MASKING = "masking (wsproto's XorMaskerSimple, session_core._mask, os.urandom)"
JSON = "JSON (orjson loads/dumps)"
SESSION_CORE = "session_core: messages, ids, state, events (all but _ws.py, _methods.py)"
CONVERSION = "typed conversion (cattrs + session_core/_methods.py hooks)"
DRIVER = "benchmark driver (the loop, AddArgs(i, 1))"
COMPILED = "session_core compiled (all of the above that it calls from C: cProfile sees no further)"
OTHER = "other"
CATEGORIES = (WSPROTO, FRAMING, MASKING, JSON, SESSION_CORE, CONVERSION, COMPILED, DRIVER, OTHER)


@functools.cache
def _compiled_classes() -> frozenset[str]:
    """The names of the classes of session_core's compiled modules (none in the pure build)."""
    names: set[str] = set()
    for module in list(sys.modules.values()):
        name, file = getattr(module, "__name__", ""), str(getattr(module, "__file__", ""))
        if name.startswith("session_core.") and file.endswith((".so", ".pyd")):
            names.update(
                value.__name__
                for value in vars(module).values()
                if isinstance(value, type) and value.__module__ == name
            )
    return frozenset(names)


def _masking_keys() -> set[FuncKey]:
    # The maskers' code objects (and any generator expression inside), wherever they are.
    from wsproto.frame_protocol import XorMaskerSimple  # noqa: PLC0415

    from session_core import _mask  # noqa: PLC0415

    functions: list[Any] = [XorMaskerSimple.process, _mask.python_mask]
    codes = [f.__code__ for f in functions if hasattr(f, "__code__")]  # compiled: none
    codes += [c for code in codes for c in code.co_consts if hasattr(c, "co_firstlineno")]
    return {(c.co_filename, c.co_firstlineno, c.co_name) for c in codes}


def _own_category(func: FuncKey, masking: set[FuncKey]) -> str | None:
    """The category of a function by where its code is; `None` for "ask its callers"."""
    file, _, name = func
    if func in masking or (file == "~" and ("urandom" in name or "apply_mask" in name)):
        return MASKING
    if file == "~":
        if "orjson" in name:
            return JSON
        # The compiled build's methods: C functions, whose callees (framing, JSON, masking
        # called from C) cProfile cannot see; charged to the engine as a whole.
        owner = re.search(r"of '(\w+)' objects", name)
        return COMPILED if owner and owner.group(1) in _compiled_classes() else None
    if "/wsproto/" in file:
        return WSPROTO
    if "/session_core/_ws.py" in file:
        return FRAMING
    if "/session_core/_methods.py" in file or "cattrs" in file:
        return CONVERSION
    if "/session_core/" in file or "session_core._events" in file:
        return SESSION_CORE
    if "/benchmarks/" in file:
        return DRIVER
    return None  # builtins, <string> (dataclasses, namedtuples), stdlib, attrs-made __init__


def categorize(stats: dict[FuncKey, Any]) -> dict[str, float]:
    """Own time (tottime) per category, in seconds.

    Builtins, the standard library and generated code are charged to their callers'
    categories, in proportion to the time each caller spent in them.
    """
    masking = _masking_keys()
    memo: dict[FuncKey, dict[str, float]] = {}

    def shares(func: FuncKey, seen: frozenset[FuncKey]) -> dict[str, float]:
        if func in memo:
            return memo[func]
        own = _own_category(func, masking)
        if own is not None:
            result = {own: 1.0}
        else:
            callers = stats[func][4] if func in stats else {}
            weights: dict[str, float] = {}
            for caller, caller_stats in callers.items():
                if caller in seen:
                    continue
                for category, share in shares(caller, seen | {func}).items():
                    weights[category] = weights.get(category, 0.0) + share * (caller_stats[2] or 1e-9)
            total = sum(weights.values())
            result = {c: w / total for c, w in weights.items()} if total else {OTHER: 1.0}
        memo[func] = result
        return result

    times = dict.fromkeys(CATEGORIES, 0.0)
    for func, (_, _, tottime, _, _) in stats.items():
        for category, share in shares(func, frozenset({func})).items():
            times[category] += tottime * share
    return times


def _label(func: FuncKey) -> str:
    file, line, name = func
    if file == "~":
        return name
    for anchor in ("/site-packages/", str(Path(__file__).resolve().parents[1]) + "/", os.getcwd() + "/"):
        if anchor in file:
            file = file.split(anchor, 1)[1]
            break
    return f"{file}:{line}({name})"


def profile_typed(count: int, in_flight: int) -> pstats.Stats:
    """cProfile `count` round trips of the typed variant."""
    variant = TypedVariant()
    variant.run(min(count, 2_000), in_flight)
    profiler = cProfile.Profile()
    profiler.enable()
    tally = variant.run(count, in_flight)
    profiler.disable()
    if not tally.correct_for(count):
        raise BenchmarkError(f"wrong answers under the profiler: {tally}")
    return pstats.Stats(profiler)


def profile_markdown(settings: Settings, command: str, top: int = 15) -> str:
    """Where the typed variant's time goes, per mode: categories and top functions."""
    count = min(settings.count, DEFAULT_COUNT)
    lines = [f"Command: `{command}` (cProfile, {count:,} round trips per mode, sorted by own time)", ""]
    for in_flight in settings.modes:
        stats = profile_typed(count, in_flight)
        raw: dict[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
        total = sum(entry[2] for entry in raw.values())
        lines += [
            f"### typed, {_mode(in_flight)} in flight: {total / count * 1e6:.0f} µs per round trip "
            "under the profiler",
            "",
            "| Where the time goes | Share |",
            "|---|---:|",
        ]
        times = categorize(raw)
        for category in CATEGORIES:
            lines.append(f"| {category} | {times[category] / total:.1%} |")
        ours = [f for f in raw if "/session_core/" in f[0] and "/_methods.py" not in f[0]]
        by_own = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)
        lines += [
            "",
            f"Top {top} functions by own time:",
            "",
            "| Function | Calls per round trip | Own time | With callees |",
            "|---|---:|---:|---:|",
        ]
        for func, (_, calls, tottime, cumtime, _) in by_own[:top]:
            lines.append(
                f"| `{_label(func)}` | {calls / count:.1f} | {tottime / total:.1%} | {cumtime / total:.1%} |"
            )
        lines += [
            "",
            f"session_core functions by own time (all of them: {sum(raw[f][2] for f in ours) / total:.1%}):",
            "",
            "| Function | Calls per round trip | Own time | With callees |",
            "|---|---:|---:|---:|",
        ]
        for func in sorted(ours, key=lambda f: raw[f][2], reverse=True)[:top]:
            _, calls, tottime, cumtime, _ = raw[func]
            lines.append(
                f"| `{_label(func)}` | {calls / count:.1f} | {tottime / total:.1%} | {cumtime / total:.1%} |"
            )
        lines.append("")
    return "\n".join(lines)


# -- output ---------------------------------------------------------------------------


def _mode(in_flight: int) -> str:
    return "1 (latency)" if in_flight == 1 else f"{in_flight} (batches)"


def results_markdown(report: Report, command: str) -> str:
    """The results as markdown: the table, where it ran, and the target check."""
    s = report.settings
    slices, per_slice = s.slicing
    count = slices * per_slice
    lines = [
        f"Command: `{command}`",
        "",
        f"- Build: {report.build}",
        *(f"- {key}: {value}" for key, value in report.environment),
        f"- Runs: {s.rounds} rounds of {count:,} round trips per variant and mode, each round in "
        f"{slices} slices taking turns between the variants (whole run {report.elapsed:.1f} s)",
        "- Time vs raw: time per round trip over raw wsproto's in the same mode (median over "
        "rounds of the ratio within each round)",
        "",
        "| Variant | In flight | Round trips/s (median) | min | max | µs per round trip | Time vs raw |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for m in report.measurements:
        rates = m.rates
        lines.append(
            f"| {m.variant} | {_mode(m.in_flight)} | {statistics.median(rates):,.0f} | {min(rates):,.0f} "
            f"| {max(rates):,.0f} | {m.seconds_per_round_trip * 1e6:.1f} | {report.ratio(m):.2f} |"
        )
    lines.append("")
    checks = []
    for in_flight in s.modes:
        ratio = report.ratio(report.get(TypedVariant.name, in_flight))
        verdict = "met" if round(ratio, 2) <= TARGET_RATIO else "**missed**"
        checks.append(f"{in_flight} in flight: {ratio:.2f}x ({verdict})")
    lines.append(f"Target (typed ≤ {TARGET_RATIO}x raw wsproto per round trip): " + "; ".join(checks) + ".")
    lines.append(f"Every answer correct in every run: {'yes' if report.correct else '**no**'}.")
    return "\n".join(lines) + "\n"


def replace_section(document: str, name: str, body: str) -> str:
    """`document` with the text between `name`'s markers replaced by `body` (appended if absent)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    head, found, rest = document.partition(begin)
    if found and end in rest:
        return head + block + rest.partition(end)[2]
    return document.rstrip() + "\n\n" + block + "\n"


def write_sections(sections: dict[str, str], path: Path = RESULTS_FILE) -> None:
    """Write each section into `path` between its markers, leaving the rest as it is."""
    document = path.read_text(encoding="utf-8") if path.exists() else "# Core benchmark results\n"
    for name, body in sections.items():
        document = replace_section(document, name, body)
    path.write_text(document, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.core_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (a few hundred round trips)")
    parser.add_argument("--rounds", type=int, help=f"timed rounds ({DEFAULT_ROUNDS})")
    parser.add_argument(
        "--count", type=int, help=f"round trips per variant, mode and round ({DEFAULT_COUNT})"
    )
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="requests in flight when batched")
    parser.add_argument("--profile", action="store_true", help="also profile the typed variant (cProfile)")
    parser.add_argument("--write", action="store_true", help=f"write the results into {RESULTS_FILE.name}")
    parser.add_argument(
        "--builds",
        choices=("auto", "current", "both"),
        default="auto",
        help="current: only this process's build; both: also the pure-Python one, in a process "
        f"started with {PURE_ENV}=1; auto (default): both when this process runs the compiled build",
    )
    args = parser.parse_args(argv)
    base = Settings.quick() if args.quick else Settings()
    settings = Settings(rounds=args.rounds or base.rounds, count=args.count or base.count, batch=args.batch)
    if settings.rounds < 1 or settings.count < 1 or settings.batch < 2:
        parser.error("--rounds and --count must be positive, --batch at least 2")
    command = "python -m benchmarks.core_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    both = args.builds == "both" or (args.builds == "auto" and compiled_build())
    report = run(settings, progress=lambda text: print(text, file=sys.stderr))
    results = results_markdown(report, command.strip())
    correct = report.correct
    if both:
        print("the pure-Python build, in its own process:", file=sys.stderr)
        same = [
            "--rounds",
            str(settings.rounds),
            "--count",
            str(settings.count),
            "--batch",
            str(settings.batch),
        ]
        pure = run_pure_build(same)
        correct = correct and "Every answer correct in every run: yes." in pure
        results = f"### Build: {report.build}\n\n{results}\n### Build: pure (`{PURE_ENV}=1`)\n\n{pure}"
    print(results)
    sections = {"results": results}
    if args.profile:
        sections["profile"] = profile_markdown(settings, command.strip())
        print(sections["profile"])
    if args.write:
        write_sections(sections)
        print(f"written to {RESULTS_FILE}", file=sys.stderr)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
