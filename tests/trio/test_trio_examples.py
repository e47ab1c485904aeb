"""The examples run, as a user would run them, and print what they promise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_the_demo_runs_every_exchange_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert lines[0].startswith("server listening on ws://127.0.0.1:")
    assert lines[1:] == [
        "client connected",
        "server -> client notification welcome('hi')",
        "client -> server request add(a=2, b=3) returned 5",
        "client -> server request echo({'x': [1, 2, 3]}) returned {'x': [1, 2, 3]}",
        "client -> server request fail() answered with the error 'boom'",
        "client -> server notification note('hello from the client')",
        "server -> client request whoami() returned 'the demo client'",
        "client closed the session (close code 1000)",
        "demo finished: every exchange went as expected",
    ]


def test_the_example_client_talks_to_the_example_server() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "server.py"), "127.0.0.1", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline().strip()
        assert first.startswith("listening on ws://127.0.0.1:"), first
        url = first.removeprefix("listening on ")
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "client.py"), url],
            capture_output=True,
            text=True,
            timeout=30,
            env=_env(),
            check=False,
        )
        assert client.returncode == 0, client.stderr
        printed = client.stdout.splitlines()
        assert printed.count("welcome: hi") == 1  # whenever it arrived
        printed.remove("welcome: hi")
        assert printed == ["echo: {'x': [1, 2, 3]}", "add: 5", "fail: boom"]
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: a clean shutdown
        _, errors = server.communicate(timeout=10)
    assert server.returncode == 0, errors
