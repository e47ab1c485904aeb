"""The control channel between a client and its server: CPU time and profiling on demand.

The server runs a small line-based TCP service in a thread of its own, apart from the event
loop under test. `cpu` answers `time.process_time()` of the whole server process (read in
that thread: it costs the loop nothing), `profile-start` / `profile-stop` start and stop a
sampling profiler in the loop's own thread (through a thread-safe call the loop provides).
The client asks for `cpu` right before and right after each measured run: the difference is
the server's CPU time for exactly that run (and, on Linux, how long its event loop thread
waited for a core meanwhile: what other processes took from it).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import HOST

CallInLoop = Callable[[Callable[[], None]], None]
"Runs a function in the event loop's thread and returns when it has run."

PROFILE_INTERVAL = 0.0005
"Seconds between profiler samples."


def thread_schedule() -> tuple[float, float] | None:
    """Seconds the calling thread ran, and waited for a core, so far (Linux), else None."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as stat:
            ran, waited, _ = stat.read().split()
    except (OSError, ValueError):
        return None
    return int(ran) / 1e9, int(waited) / 1e9


def main_thread_wait() -> float | None:
    """Seconds the process's main thread (its event loop) has waited for a core (Linux)."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def schedule_path(profile: Path) -> Path:
    """Where `Profiling` saves the thread's scheduling next to a profile."""
    return profile.with_name(profile.name + ".schedule.json")


class Profiling:
    """A pyinstrument profiler of the calling thread, saved to a file when stopped.

    Next to it goes how long the thread ran, waited for a core and waited for I/O (idle)
    meanwhile, from Linux's schedstat: what tells idle time from work on uvloop, whose C
    code shows no frames to the profiler.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._profiler: Any = None
        self._started = 0.0
        self._schedule: tuple[float, float] | None = None

    def start(self) -> None:
        """Start sampling the calling thread (the event loop's)."""
        from pyinstrument import Profiler  # noqa: PLC0415 - only profiling runs need it

        self._profiler = Profiler(interval=PROFILE_INTERVAL, async_mode="disabled")
        self._schedule = thread_schedule()
        self._started = time.perf_counter()
        self._profiler.start()

    def stop(self) -> None:
        """Stop sampling and save the session (pyinstrument's JSON format)."""
        if self._profiler is None:
            return
        session = self._profiler.stop()
        wall = time.perf_counter() - self._started
        schedule = thread_schedule()
        self._profiler = None
        session.save(self.path)
        if schedule is not None and self._schedule is not None:
            ran, waited = schedule[0] - self._schedule[0], schedule[1] - self._schedule[1]
            data = {"wall": wall, "ran": ran, "waited": waited, "idle": max(0.0, wall - ran - waited)}
            schedule_path(self.path).write_text(json.dumps(data), encoding="utf-8")


class ControlServer:
    """The server side: a daemon thread serving `cpu`, `profile-start`, `profile-stop`."""

    def __init__(self, profile_path: Path | None = None) -> None:
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        self._call_in_loop: CallInLoop | None = None
        self._profiling = Profiling(profile_path) if profile_path is not None else None
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def bind(self, call_in_loop: CallInLoop) -> None:
        """Tell how to run a function in the loop's thread (once the loop runs)."""
        self._call_in_loop = call_in_loop

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_one, args=(conn,), name="control-conn", daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                stream.write(self._answer(line.strip().decode()).encode() + b"\n")
                stream.flush()

    def _answer(self, command: str) -> str:
        if command == "cpu":
            return f"{time.process_time()!r} {main_thread_wait()!r}"
        if command in ("profile-start", "profile-stop"):
            profiling, call = self._profiling, self._call_in_loop
            if profiling is None or call is None:
                return "error: not profiling"
            try:
                call(profiling.start if command == "profile-start" else profiling.stop)
            except Exception as exc:
                return f"error: {type(exc).__name__}: {exc}"
            return "ok"
        return f"error: unknown command {command!r}"

    def close(self) -> None:
        """Stop accepting."""
        with contextlib.suppress(OSError):
            self._listener.close()


class ControlClient:
    """The client side: blocking queries, made only outside the measured runs."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self._sock = socket.create_connection((HOST, port), timeout=timeout)
        self._stream = self._sock.makefile("rwb")

    def ask(self, command: str) -> str:
        """Send one command and return its answer line."""
        self._stream.write(command.encode() + b"\n")
        self._stream.flush()
        answer = self._stream.readline().decode().strip()
        if not answer:
            raise ConnectionError("the control channel closed")
        return answer

    def cpu(self) -> tuple[float, float | None]:
        """The server's CPU time, and how long its loop waited for a core, in seconds."""
        cpu, wait = self.ask("cpu").split()
        return float(cpu), None if wait == "None" else float(wait)

    def command(self, command: str) -> None:
        """A command that answers `ok`.

        Raises:
            RuntimeError: it answered an error.
        """
        answer = self.ask(command)
        if answer != "ok":
            raise RuntimeError(f"{command}: {answer}")

    def close(self) -> None:
        """Close the channel."""
        self._stream.close()
        self._sock.close()
