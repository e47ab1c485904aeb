"""The examples added with the command line run, as a user runs them, and do what they say.

`custom_loop_client.py` and `asyncio_client_timeouts.py` talk to the command line's demo
server (started here in a subprocess, ticking fast); `trio_typed_server.py` runs its own
server and client; `test_my_protocol.py` is run by pytest as a user would run it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import DemoServer, env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    """`python -m session_asyncio serve`, ticking every 50 ms."""
    server = DemoServer("--tick", "0.05")
    try:
        yield server
    finally:
        assert server.stop() == 0


def run_example(name: str, *argv: str, timeout: float = 30) -> list[str]:
    """Run `examples/NAME`; its stdout lines, once it exited with 0 and a silent stderr."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *argv],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    return done.stdout.splitlines()


def test_custom_loop_client(demo: DemoServer) -> None:
    lines = run_example("custom_loop_client.py", demo.url)
    assert lines[0] == "connected"
    assert lines[-1] == "closed (1000)"
    assert set(lines[1:-1]) >= {
        "notification welcome: 'hi'",
        "add(2, 3) -> 5",
        "echo -> {'x': [1, 2, 3]}",
        "fail -> error response 'boom'",
        "notification tick: 1",
        "notification tick: 2",
        "sleep(5) -> timed out after 0.5 s (the server got $/cancel)",
    }


def test_asyncio_client_timeouts(demo: DemoServer) -> None:
    lines = run_example("asyncio_client_timeouts.py", demo.url, "3")
    assert lines[:3] == [
        "echo: 'hello'",
        "sleep(2) with timeout=0.2: TimeoutError (the server was sent $/cancel)",
        "sleep(0.1): done",
    ]
    gave_up = re.fullmatch(r"sleep\(2\) under asyncio\.timeout\(0\.5\): gave up after (\d\.\d) s", lines[3])
    assert gave_up is not None, lines[3]
    assert 0.5 <= float(gave_up[1]) < 1.5  # at the deadline, not after the 2 s sleep
    concurrent = re.fullmatch(r"3 concurrent sleep\(0\.2\): (\d\.\d) s", lines[4])
    assert concurrent is not None, lines[4]
    assert float(concurrent[1]) < 0.6  # at once, not one after the other
    assert lines[5:] == ["tick 1", "tick 2", "tick 3", "closed (1000)"]


def test_trio_typed_server() -> None:
    lines = run_example("trio_typed_server.py")
    assert re.fullmatch(r"serving on ws://127\.0\.0\.1:\d+/", lines[0])
    assert lines[-1] == "done"
    printed = set(lines[1:-1])
    assert printed == {
        "created: Note(id=1, text='buy milk', tags=['home'])",
        "bob was told: Note(id=1, text='buy milk', tags=['home'])",
        "bob was told: Note(id=2, text='write the report', tags=['work'])",
        "get 1: Note(id=1, text='buy milk', tags=['home'])",
        "get 7: NoteError(reason='no such note', id=7)",
        "find home: [Note(id=1, text='buy milk', tags=['home'])]",
        "bad data: -32602",
    }


def test_my_protocol_runs_under_pytest() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/test_my_protocol.py"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_rust_guide_python_snippets_compile() -> None:
    text = (EXAMPLES / "RUST.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert snippets
    for snippet in snippets:
        compile(snippet, "RUST.md", "exec")
    for promise in ("request_timeout", "1005", "44 ms", "one request at a time", "empty pong", "Host"):
        assert promise in text, promise
