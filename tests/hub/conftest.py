"""Fixtures of the hub tests: a real `redis-server`, started and stopped per test module.

The server runs on a free loopback port with a temporary directory and no persistence.
Where `redis-server` is not installed the Redis tests are skipped, unless the environment
sets `SESSION_PY_REQUIRE_PEERS=1` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A `redis-server` process on `127.0.0.1:port` that a test may kill and restart."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL to give `open_hub`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most 10 s)."""
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def kill(self) -> None:
        """SIGKILL the server (nothing flushed, every connection dropped at once)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        """Kill the server with SIGKILL and start a new one on the same port (empty)."""
        self.kill()
        self.start()

    def command(self, *args: str) -> bytes:
        """Send one command (inline protocol) and return the raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            return sock.recv(65536)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running `redis-server`, stopped after the test (skipped when not installed)."""
    executable = shutil.which("redis-server")
    if executable is None:
        if os.environ.get("SESSION_PY_REQUIRE_PEERS") == "1":
            pytest.fail("redis-server is not installed and SESSION_PY_REQUIRE_PEERS=1")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(executable, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(autouse=True)
def _coredis_bytes_comparisons() -> Iterator[None]:
    """Let coredis compare bytes with str under `python -bb` (the tests' setting).

    coredis looks replies up in sets that mix `b"OK"` and `"OK"`; Python without `-bb` says
    nothing of it, and it is no bug of ours or theirs. Only coredis's own modules are let off.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BytesWarning, module=r"coredis(\..*)?")
        yield
