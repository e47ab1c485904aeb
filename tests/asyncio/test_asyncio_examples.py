"""The examples run, and the client gets what the server serves."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_the_examples_talk_to_each_other() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "asyncio_server.py"),
        "127.0.0.1",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 10)).decode()
        assert line.startswith("listening on ws://127.0.0.1:"), line
        url = line.split()[-1]
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "examples" / "asyncio_client.py"),
            url,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await asyncio.wait_for(client.communicate(), 10)
        assert client.returncode == 0
        assert sorted(out.decode().splitlines()) == [
            "add: 5",
            "echo: {'x': [1, 2, 3]}",
            "fail: boom",
            "welcome: hi",
        ]
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
        await asyncio.wait_for(server.wait(), 10)
    assert server.returncode == 0  # Ctrl-C shuts it down cleanly
