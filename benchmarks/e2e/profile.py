"""Where the time goes: pyinstrument samples of a server and its client under load.

Both processes sample their event loop thread (every 0.5 ms, wall clock) during the
measured run of one scenario. Each sample's time goes to the category of its innermost
frame: the file it runs in, or for a C function the function itself (`loads`/`dumps` are
JSON, socket calls are I/O) or else the Python code that called it. Time the process spent
waiting is idle: the selector's `poll` on asyncio's own loop; on uvloop, whose C code shows
no frames, the difference between wall time and the process's CPU time, taken out of the
event loop's share. Shares are of the busy time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import Scenario
from .control import schedule_path
from .results import Budget, Plan, Sample
from .runner import Settings, await_server, run_client, start_server
from .variants import Variant

FRAMING = "WebSocket framing (session_core._ws, wsproto, h11)"
JSON = "JSON (orjson, session_core._json)"
CONVERSION = "typed conversion (cattrs, _methods)"
SESSION_CORE = "session_core (protocol logic)"
ADAPTER = "adapter (session_asyncio / session_trio)"
WEBSOCKETS = "websockets library"
LIBRARY = "other WebSocket library"
EVENT_LOOP = "event loop, tasks, socket I/O"
HARNESS = "benchmark load generator"
PEER_CODE = "peer code (handler, hand-written id matching)"
OTHER = "other"
IDLE = "idle (waiting for the peer)"

CATEGORIES = (
    FRAMING,
    JSON,
    CONVERSION,
    SESSION_CORE,
    ADAPTER,
    WEBSOCKETS,
    LIBRARY,
    EVENT_LOOP,
    HARNESS,
    OTHER,
)

#: The repository's root, as given and with links resolved: the frames of the project's own
#: files are named relative to it.
_HERE = Path(__file__)
REPO_ROOTS = tuple(dict.fromkeys(f"{here.parents[2]}/" for here in (_HERE.absolute(), _HERE.resolve())))
#: A standard library directory (`/usr/lib/python3.11/`), whatever the prefix.
_STDLIB = re.compile(r"/lib/python3\.\d+/")

_JSON_BUILTINS = frozenset({"loads", "dumps"})
_IDLE_BUILTINS = frozenset({"poll", "select", "control"})
_IO_BUILTINS = frozenset(
    {
        "send",
        "sendall",
        "sendmsg",
        "recv",
        "recv_into",
        "write",
        "writelines",
        "close",
        "shutdown",
        "socketpair",
    }
)
_FILE_RULES: tuple[tuple[str, str], ...] = (
    ("/session_core/_ws.py", FRAMING),
    ("/wsproto/", FRAMING),
    ("/h11/", FRAMING),
    ("/session_core/_json.py", JSON),
    ("/session_core/_methods.py", CONVERSION),
    ("/cattrs/", CONVERSION),
    ("/attr/", CONVERSION),
    ("/attrs/", CONVERSION),
    ("/session_core/", SESSION_CORE),
    ("/session_asyncio/", ADAPTER),
    ("/session_trio/", ADAPTER),
    ("/websockets/", WEBSOCKETS),
    ("/aiohttp/", LIBRARY),
    ("/picows/", LIBRARY),
    ("/trio_websocket/", LIBRARY),
    ("/benchmarks/e2e/load.py", HARNESS),
    ("/benchmarks/e2e/", PEER_CODE),
    ("/asyncio/", EVENT_LOOP),
    ("/uvloop/", EVENT_LOOP),
    ("/trio/", EVENT_LOOP),
    ("/selectors.py", EVENT_LOOP),
    ("/socket.py", EVENT_LOOP),
    ("/contextvars", EVENT_LOOP),
    ("<thread>", EVENT_LOOP),
)


def _parts(frame_info: str) -> tuple[str, str]:
    identifier = frame_info.split("\x01", 1)[0]
    function, _, rest = identifier.partition("\x00")
    file, _, _ = rest.partition("\x00")
    return function, file


def file_category(path: str) -> str | None:
    """The category of Python code in `path` (None: a helper, charged to its caller)."""
    for fragment, name in _FILE_RULES:
        if fragment in path:
            return name
    return None


def category(stack: list[str]) -> str:
    """The category of one sample, from its innermost frame.

    A C function is JSON (`loads`, `dumps`), idle (`poll`) or I/O (socket and transport
    calls) by its name, else charged to its caller; so is Python code that belongs to no
    category (generated `__init__`s, `contextlib`, `enum`...).
    """
    function, path = _parts(stack[-1])
    if path == "<built-in>":
        name = function.rsplit(".", 1)[-1]
        if name in _JSON_BUILTINS:
            return JSON
        if name in _IDLE_BUILTINS:
            return IDLE
        if name in _IO_BUILTINS:
            return EVENT_LOOP
    for frame_info in reversed(stack):
        _, path = _parts(frame_info)
        found = file_category(path)
        if found is not None:
            return found
    return OTHER


@dataclass
class Breakdown:
    """One process's profile, summed by category."""

    seconds: dict[str, float]
    "Category -> sampled seconds; IDLE included."
    duration: float
    cpu: float
    "CPU seconds of the process while it was profiled."
    top: list[tuple[str, float]] = field(default_factory=list)
    "The innermost frames with the most time: (`function (file)`, seconds), idle excluded."

    @property
    def total(self) -> float:
        """Sampled seconds, idle included."""
        return sum(self.seconds.values())

    @property
    def busy(self) -> float:
        """Sampled seconds not idle."""
        return self.total - self.seconds.get(IDLE, 0.0)

    def share(self, name: str) -> float:
        """The category's share of the busy time, 0..1."""
        busy = self.busy
        return self.seconds.get(name, 0.0) / busy if busy > 0 else 0.0

    def cpu_per_request(self, name: str, requests: int) -> float:
        """The category's share of the measured CPU time, in µs per request."""
        return self.share(name) * self.cpu / requests * 1e6 if requests > 0 else 0.0

    @property
    def idle_share(self) -> float:
        """Idle time as a share of the whole sampled time."""
        total = self.total
        return self.seconds.get(IDLE, 0.0) / total if total > 0 else 0.0


def _short(frame_info: str) -> str:
    function, path = _parts(frame_info)
    if path == "<built-in>":
        return f"{function} (C)"
    if function == "run" and path.endswith("asyncio/runners.py"):
        return "asyncio.Runner.run (on uvloop: its C loop, waiting included)"
    return f"{function} ({display_path(path)})"


def display_path(path: str) -> str:
    """`path` as the profile tables show it: never a path of the machine that ran them.

    An installed library's file is named from its package (`wsproto/frame_protocol.py`), a
    standard library module from the library's root (`asyncio/events.py`), a benchmark peer
    from `benchmarks/e2e/` (`load.py`), and the project's own files from the repository's
    root (`session_core/_ws.py`). Anything else absolute keeps its file name only, so that a
    committed `RESULTS.md` holds no home directory or build path.
    """
    for marker in ("/site-packages/", "/benchmarks/e2e/"):
        if marker in path:
            return path.split(marker, 1)[1]
    for root in REPO_ROOTS:
        if path.startswith(root):
            return path[len(root) :]
    stdlib = _STDLIB.search(path)
    if stdlib is not None:
        return path[stdlib.end() :]
    return os.path.basename(path) if os.path.isabs(path) else path


def breakdown(path: Path) -> Breakdown:
    """Read a saved pyinstrument session and sum it by category."""
    from pyinstrument.session import Session  # noqa: PLC0415 - only profiling runs need it

    session = Session.load(path)
    totals: dict[str, float] = {}
    frames: dict[str, float] = {}
    for stack, seconds in session.frame_records:
        name = category(stack)
        totals[name] = totals.get(name, 0.0) + seconds
        if name != IDLE:
            key = _short(stack[-1])
            frames[key] = frames.get(key, 0.0) + seconds
    result = Breakdown(dict(totals), float(session.duration), float(session.cpu_time))
    if totals.get(IDLE, 0.0) == 0.0:
        # uvloop: its C code shows no frame, so its waiting is the time of the Python frame
        # that called it (asyncio's runner): take the thread's idle time (wall time neither
        # running nor waiting for a core) out of the event loop's time.
        idle = max(0.0, result.duration - result.cpu)
        extra = schedule_path(path)
        if extra.exists():
            idle = float(json.loads(extra.read_text(encoding="utf-8"))["idle"])
        idle = min(idle, result.seconds.get(EVENT_LOOP, 0.0))
        result.seconds[EVENT_LOOP] = result.seconds.get(EVENT_LOOP, 0.0) - idle
        result.seconds[IDLE] = idle
    result.top = sorted(frames.items(), key=lambda item: item[1], reverse=True)[:12]
    return result


@dataclass
class ProfileResult:
    """The profiles of one variant's server and client under one scenario."""

    variant: str
    scenario: str
    sample: Sample
    server: Breakdown | None
    client: Breakdown | None
    error: str | None = None


def profile_variant(variant: Variant, settings: Settings, scenario: Scenario) -> ProfileResult:
    """Run `scenario` once with both processes profiled."""
    plan = Plan(
        scenario.name,
        Budget(seconds=min(0.5, settings.profile_seconds)),
        Budget(seconds=settings.profile_seconds),
        settings.profile_seconds * 5 + 30.0,
    )
    with tempfile.TemporaryDirectory(prefix="e2e-profile-") as tmp:
        server_file = Path(tmp) / "server.json"
        client_file = Path(tmp) / "client.json"
        server = start_server(variant, server_file)
        try:
            await_server(server, time.monotonic() + 60.0)
            if server.error is not None:
                return ProfileResult(
                    variant.name, scenario.name, Sample(variant.name, scenario.name), None, None, server.error
                )
            [sample] = run_client(variant, server, [plan], 0, client_file)
        finally:
            server.child.dispose()
        if sample.error is not None or not server_file.exists() or not client_file.exists():
            return ProfileResult(
                variant.name, scenario.name, sample, None, None, sample.error or "no profile written"
            )
        return ProfileResult(
            variant.name, scenario.name, sample, breakdown(server_file), breakdown(client_file)
        )
