"""What the reliability tests share: backends, accounting, and raw peers.

This package's tests run each scenario on both adapters through `Backend`
(`tests.adapters.backend`: trio, asyncio, uvloop), so that one test body covers both;
attackers are plain blocking sockets run in a thread (`RawPeer`, `RawServer`), so that they
behave the same against either adapter and can do what no well-behaved peer does (stop
reading, trickle a handshake, drop the TCP connection mid-frame). The tests are plain
functions that call `Backend.run`: they need no conftest hook, and each runs under a
deadline. Frames are built and read with `tests.wire`.

Both adapters' `Session` classes have the same API, so the tests type a session as `Any`.
"""

from __future__ import annotations

import functools
import resource
from collections.abc import Callable
from typing import Any, TypeVar

from tests import wire
from tests.adapters.backend import (
    ADAPTERS,
    ASYNCIO,
    BACKENDS,
    DEFAULT_TIMEOUT,
    TRIO,
    UVLOOP,
    AsyncioBackend,
    Backend,
    OnSession,
    Server,
    TrioBackend,
    fd_count,
)
from tests.adapters.peers import RawPeer, RawServer, accept_upgrade, close_code, upgrade_request
from tests.methods import AnySession
from tests.wire import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, accept_response, server_frame

# Re-exported: the reliability tests import all they share from here.
__all__ = [
    "ADAPTERS",
    "ASYNCIO",
    "BACKENDS",
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "DEFAULT_TIMEOUT",
    "PING",
    "PONG",
    "TEXT",
    "TRIO",
    "UVLOOP",
    "AnySession",
    "AsyncioBackend",
    "Backend",
    "OnSession",
    "RawPeer",
    "RawServer",
    "Server",
    "TrioBackend",
    "accept_response",
    "accept_upgrade",
    "client_frame",
    "close_code",
    "fd_count",
    "frame_header",
    "partial",
    "raise_fd_limit",
    "rss_kib",
    "server_frame",
    "upgrade_request",
]

T = TypeVar("T")

# -- accounting ------------------------------------------------------------------------


def rss_kib(pid: int | str = "self") -> int:
    """The resident set size of a process, in KiB."""
    return _status_field(pid, "VmRSS")


def _status_field(pid: int | str, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise LookupError(name)  # pragma: no cover - every Linux process has them


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's soft limit on open files to `wanted` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# -- raw frames (the codec is `tests.wire`) ----------------------------------------------


def frame_header(opcode: int, length: int, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """The header of an RFC 6455 frame, with its masking key when `mask` is given."""
    return wire.frame_header(opcode, length, fin=fin, mask=mask)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A frame as a client must send it: masked with a fresh key."""
    return wire.client_frame(opcode, payload, fin=fin)


def partial(function: Callable[..., T], *args: Any, **kwargs: Any) -> Callable[[], T]:
    """`functools.partial`, typed as a no-argument callable."""
    return functools.partial(function, *args, **kwargs)
