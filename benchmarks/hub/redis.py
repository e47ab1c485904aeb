"""A temporary `redis-server`, and its CPU time (`INFO cpu`).

The one helper that starts a real Redis for the hub's benchmark and for its tests
(`tests/hub/conftest.py`), which also kill and restart it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .common import HOST, free_port


class RedisServer:
    """A `redis-server` on a free loopback port with a temporary directory, no persistence.

    Args:
        executable: the server's program (default: `redis-server` on the PATH).
        directory: its working directory (default: a new temporary one, removed by `stop`).
    """

    def __init__(self, executable: str | None = None, directory: Path | None = None) -> None:
        found = executable or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.executable = found
        self.port = free_port()
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="hub-redis-")
            directory = Path(self._temporary.name)
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, database 0."""
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING (at most 10 s).

        Raises:
            RuntimeError: it exited or did not answer.
        """
        self.process = subprocess.Popen(
            [
                *(self.executable, "--port", str(self.port), "--bind", HOST),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                if self.command("PING").startswith(b"+PONG"):
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
        """One inline command; its whole reply (a bulk string is read to its end)."""
        with socket.create_connection((HOST, self.port), timeout=2) as sock:
            sock.sendall(" ".join(args).encode() + b"\r\n")
            reply = sock.recv(65536)
            if reply.startswith(b"$"):
                header, _, rest = reply.partition(b"\r\n")
                size = int(header[1:])
                while len(rest) < size + 2 and size >= 0:
                    more = sock.recv(65536)
                    if not more:
                        break
                    rest += more
                return rest[: max(size, 0)]
            return reply

    def cpu(self) -> float | None:
        """Seconds of CPU Redis has used (user + system, main thread and children)."""
        try:
            info = self.command("INFO", "cpu").decode()
        except OSError:
            return None
        total = 0.0
        for line in info.splitlines():
            name, _, value = line.partition(":")
            if name in ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"):
                total += float(value)
        return total

    def stop(self) -> None:
        """Stop the server and remove its temporary directory (not one it was given)."""
        self.kill()
        if self._temporary is not None:
            self._temporary.cleanup()
