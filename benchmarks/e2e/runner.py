"""The orchestrator: starts servers and clients as processes and collects their samples.

Every repeat is one round over all variants, so that a slow drift of the machine's load
touches every variant alike (odd rounds take them in reverse order). A round starts one
fresh server process per variant, then runs one client process per variant in turn, which
runs every scenario against its server. A server that cannot start makes its variant
unavailable (with the reason) for the rest of the run; a client that fails, hangs or dies
turns its scenarios into errors. Child processes are always reaped: closed stdin first
(they exit on their own), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .common import SCENARIOS, SCENARIOS_BY_NAME, Scenario
from .results import Budget, Plan, Sample
from .variants import Variant, select

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT = 60.0
STOP_GRACE = 5.0

spawned_pids: list[int] = []
"Every child process started, for tests that check none is left."

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Child:
    """A worker process: JSON lines from its stdout, its stderr kept in a temporary file."""

    def __init__(self, args: Sequence[str], label: str, env_extra: dict[str, str] | None = None) -> None:
        self.label = label
        env = dict(os.environ) | (env_extra or {})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by dispose()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.e2e.worker", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=env,
        )
        spawned_pids.append(self.proc.pid)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"read-{label}", daemon=True)
        self._reader.start()
        self._closed = False

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def next_json(self, deadline: float) -> dict[str, Any] | None:
        """The next JSON line, None at the end of its output.

        Raises:
            TimeoutError: nothing came before `deadline` (a `time.monotonic()` value).
        """
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"{self.label}: no answer in time") from None
            if line is None:
                self._lines.put(None)  # stays at the end
                return None
            try:
                data = json.loads(line)
            except ValueError:
                continue  # not ours (a library printing to stdout)
            if isinstance(data, dict):
                return data

    def stderr_tail(self, size: int = 600) -> str:
        """The end of what it wrote to stderr."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            end = self._stderr.tell()
            self._stderr.seek(max(0, end - size))
            return self._stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""

    def reason(self) -> str:
        """Why it failed, as far as it said (the last line of its stderr)."""
        lines = [line for line in self.stderr_tail().splitlines() if line.strip()]
        code = self.proc.poll()
        tail = lines[-1].strip() if lines else "no output"
        return f"{tail} (exit code {code})" if code is not None else tail

    def close_stdin(self) -> None:
        """Tell it to end (a worker ends when its stdin does), without waiting."""
        stdin = self.proc.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.close()

    def close(self, grace: float = STOP_GRACE) -> None:
        """Close its stdin (it ends itself) and reap it; terminate or kill it if it lingers."""
        if self._closed:
            return
        self._closed = True
        proc = self.proc
        self.close_stdin()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reader.join(5.0)
        if proc.stdout is not None:
            proc.stdout.close()

    def dispose(self) -> None:
        """Close it, then drop its stderr file."""
        self.close()
        self._stderr.close()


@dataclass
class Server:
    """A started server process and where to reach it."""

    child: Child
    port: int = 0
    control: int = 0
    error: str | None = None
    build: str | None = None
    "What a session-py server runs (`compiled, C masking`, ...), as it said."


def start_server(variant: Variant, profile: Path | None = None) -> Server:
    """Spawn a server process (without waiting for it)."""
    args = ["server", json.dumps(variant.to_json())]
    if profile is not None:
        args += ["--profile", str(profile)]
    return Server(Child(args, f"server {variant.name}", variant.env))


def await_server(server: Server, deadline: float) -> None:
    """Wait for its `ready` line; set `error` if it cannot serve."""
    try:
        line = server.child.next_json(deadline)
    except TimeoutError:
        server.error = "the server did not start in time"
        return
    if line is None:
        server.error = f"the server exited: {server.child.reason()}"
    elif "error" in line:
        server.error = str(line["error"])
    else:
        server.port = int(line["port"])
        server.control = int(line["control"])
        build = line.get("build")
        server.build = str(build) if build is not None else None


def run_client(
    variant: Variant, server: Server, plans: Sequence[Plan], repeat: int, profile: Path | None = None
) -> list[Sample]:
    """Run the plans in one client process; one sample per plan, errors included."""
    args = [
        "client",
        json.dumps(variant.to_json()),
        str(server.port),
        str(server.control),
        json.dumps([plan.to_json() for plan in plans]),
    ]
    if profile is not None:
        args += ["--profile", str(profile)]
    child = Child(args, f"client {variant.name}", variant.env)
    samples: dict[str, Sample] = {}
    failure: str | None = None
    try:
        deadline = time.monotonic() + sum(plan.timeout for plan in plans) + 30.0
        while len(samples) < len(plans):
            try:
                line = child.next_json(deadline)
            except TimeoutError:
                failure = "the client did not finish in time"
                break
            if line is None:
                child.close()
                failure = f"the client exited: {child.reason()}"
                break
            if "fatal" in line:
                failure = str(line["fatal"])
                continue
            sample = Sample.from_json(line)
            samples[sample.scenario] = sample
        else:
            # Let it close its connections and exit on its own before its stdin closes.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(15.0)
    finally:
        child.dispose()
    out = []
    for plan in plans:
        sample = samples.get(plan.scenario) or Sample(
            variant.name, plan.scenario, error=failure or "no result"
        )
        sample.repeat = repeat
        out.append(sample)
    return out


@dataclass
class Settings:
    """What to run, how long and how often."""

    variants: list[Variant] = field(default_factory=select)
    scenarios: list[Scenario] = field(default_factory=lambda: list(SCENARIOS))
    repeats: int = 5
    seconds: float | None = 1.0
    "Measured seconds per scenario run (None: the scenarios' quick counts)."
    warmup_seconds: float = 0.3
    count_scale: float = 1.0
    "Multiplies the quick counts when `seconds` is None."
    scenario_timeout: float | None = None
    jobs: int = 1
    "Variants measured at once (more than 1 only for smoke runs: they share the cores)."
    profile: bool = True
    profile_seconds: float = 3.0
    profile_scenario: str = "inflight100"
    profile_variants: tuple[str, ...] = (
        "session_asyncio@uvloop",
        "session_asyncio@asyncio",
        "websockets@uvloop",
        "session_trio@trio",
        "trio-websocket@trio",
    )

    @classmethod
    def quick(cls, variants: Sequence[Variant] | None = None) -> Settings:
        """Tiny counts, one repeat, no profile: a smoke run."""
        return cls(
            variants=list(variants) if variants is not None else select(),
            repeats=1,
            seconds=None,
            warmup_seconds=0.0,
            jobs=4,
            profile=False,
            profile_seconds=1.0,
        )

    def plan(self, scenario: Scenario) -> Plan:
        """How a client runs `scenario` under these settings."""
        if self.seconds is None:
            count = max(1, round(scenario.quick_count * self.count_scale))
            warmup = max(0, round(scenario.quick_warmup * self.count_scale))
            timeout = self.scenario_timeout or 30.0
            return Plan(scenario.name, Budget(count=warmup), Budget(count=count), timeout)
        timeout = self.scenario_timeout or (self.warmup_seconds + self.seconds) * 5 + 30.0
        return Plan(scenario.name, Budget(seconds=self.warmup_seconds), Budget(seconds=self.seconds), timeout)

    def plans(self) -> list[Plan]:
        """The plans of every selected scenario."""
        return [self.plan(s) for s in self.scenarios]


@dataclass
class Report:
    """Everything a run measured."""

    settings: Settings
    samples: list[Sample] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    "Variant name -> why it could not run."
    builds: dict[str, str] = field(default_factory=dict)
    "Variant name -> what its server ran, for session-py's own (`pure, C masking`, ...)."
    profiles: list[Any] = field(default_factory=list)
    "`profile.ProfileResult`s."
    started: float = 0.0
    wall_seconds: float = 0.0
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def of(self, variant: str, scenario: str) -> list[Sample]:
        """The samples of one cell, every repeat."""
        return [s for s in self.samples if s.variant == variant and s.scenario == scenario]

    @property
    def correct(self) -> bool:
        """No answer was wrong anywhere."""
        return all(s.wrong == 0 for s in self.samples)


def _loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def run_round(settings: Settings, repeat: int, report: Report, progress: Progress) -> None:
    """One repeat: a fresh server per variant, then each variant's client in turn."""
    variants = [v for v in settings.variants if v.name not in report.unavailable]
    plans = settings.plans()
    order = {v.name: i for i, v in enumerate(settings.variants)} | {
        s.name: i for i, s in enumerate(settings.scenarios)
    }
    servers: dict[str, Server] = {}
    try:
        for variant in variants:
            servers[variant.name] = start_server(variant)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        for variant in variants:
            await_server(servers[variant.name], deadline)
        ready = []
        for variant in variants:
            server = servers[variant.name]
            if server.error is not None:
                progress(f"  {variant.name}: unavailable ({server.error})")
                report.unavailable[variant.name] = server.error
            else:
                ready.append(variant)
                if server.build is not None:
                    report.builds[variant.name] = server.build

        def measure(variant: Variant) -> None:
            server = servers[variant.name]
            started = time.monotonic()
            samples = run_client(variant, server, plans, repeat)
            report.samples.extend(samples)
            errors = [f"{s.scenario}: {s.error}" for s in samples if s.error]
            if server.child.proc.poll() is not None:
                errors.append(f"server died: {server.child.reason()}")
            summary = "; ".join(errors) if errors else "ok"
            progress(f"  {variant.name}: {time.monotonic() - started:.1f} s, {summary}")

        if repeat % 2:
            ready.reverse()  # odd rounds run backwards: no variant always runs early or late
        if settings.jobs <= 1:
            for variant in ready:
                measure(variant)
        else:
            with ThreadPoolExecutor(settings.jobs) as pool:
                for done in [pool.submit(measure, variant) for variant in ready]:
                    done.result()
        report.samples.sort(key=lambda s: (s.repeat, order[s.variant], order[s.scenario]))
    finally:
        for server in servers.values():
            server.child.close_stdin()
        for server in servers.values():
            server.child.dispose()


def run(settings: Settings, progress: Progress = _quiet) -> Report:
    """Run the whole matrix (and the profiles, when asked)."""
    report = Report(settings, started=time.time(), load_before=_loadavg())
    began = time.monotonic()
    for repeat in range(settings.repeats):
        progress(f"round {repeat + 1}/{settings.repeats}")
        run_round(settings, repeat, report, progress)
    if settings.profile:
        from .profile import ProfileResult, profile_variant  # noqa: PLC0415 - a module apart

        selected = {v.name: v for v in settings.variants}
        scenario = SCENARIOS_BY_NAME[settings.profile_scenario]
        for name in settings.profile_variants:
            variant = selected.get(name)
            if variant is None or name in report.unavailable:
                continue
            progress(f"profiling {name}")
            try:
                result = profile_variant(variant, settings, scenario)
            except Exception as exc:  # pyinstrument missing, a profile unreadable: report it
                error = f"{type(exc).__name__}: {exc}"
                result = ProfileResult(name, scenario.name, Sample(name, scenario.name), None, None, error)
            report.profiles.append(result)
    report.wall_seconds = time.monotonic() - began
    report.load_after = _loadavg()
    return report
