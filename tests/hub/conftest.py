"""Fixtures of the hub tests: a real `redis-server`, started and stopped per test module.

The server (`benchmarks.hub.redis.RedisServer`, which the hub's benchmark starts too) runs
on a free loopback port with the test's temporary directory and no persistence.
Where `redis-server` is not installed the Redis tests are skipped, unless the environment
sets `SESSION_PY_REQUIRE_PEERS=1` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.hub.redis import RedisServer


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
        server.stop()


@pytest.fixture(autouse=True)
def _coredis_bytes_comparisons() -> Iterator[None]:
    """Let coredis compare bytes with str under `python -bb` (the tests' setting).

    coredis looks replies up in sets that mix `b"OK"` and `"OK"`; Python without `-bb` says
    nothing of it, and it is no bug of ours or theirs. Only coredis's own modules are let off.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BytesWarning, module=r"coredis(\..*)?")
        yield
