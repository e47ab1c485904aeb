"""What the orchestrator and the server workers share: names, payloads, /proc readings."""

from __future__ import annotations

import os
import socket
import string
import time
from typing import Any, Final

HOST: Final = "127.0.0.1"
STACKS: Final = ("session_hub", "socketio")
"The two stacks, in the order each run measures them (the order alternates per run)."
EVENT: Final = "m"
"The notification (session) / event (Socket.IO) every fan-out message uses."
ECHO: Final = "echo"
"The request (session) / call (Socket.IO) answered by the clients with its data."
HELLO: Final = "hello"
"The notification our server sends each new session: its id, once its groups are joined."

_PAD: Final = (string.ascii_letters * 100)[:8192]


def payload(node: int, lane: int, seq: int, size: int) -> dict[str, Any]:
    """A fan-out message of about `size` bytes of JSON, stamped with the publish time.

    `t` is `time.monotonic()`: on Linux every process reads the same CLOCK_MONOTONIC, so
    the receiving process can subtract it from its own reading.
    """
    return {"n": node, "l": lane, "s": seq, "t": time.monotonic(), "p": _PAD[: max(0, size - 70)]}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


_TICK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process `pid`, from `/proc/<pid>/stat`."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: count fields after its closing paren.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_rss(pid: int) -> int | None:
    """Resident memory of process `pid` in KiB, from `/proc/<pid>/status`."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
