"""`bash run.sh hub-demo` (`examples/hub_demo.py`) runs as a newcomer runs it, and shows what
it says: a broadcast reaching every client once on two nodes, and a cross-node request."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank"]


def _run(*argv: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "hub_demo.py"), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stderr == "", done.stderr  # no warning, no traceback, from any process
    return done.stdout


def _check(out: str) -> None:
    for name in NAMES:
        assert len(re.findall(rf"^  {name} +got 'hello, everyone'$", out, re.MULTILINE)) == 1, out
    assert "every client got it once, on 2 node(s)" in out, out
    assert re.search(r"^alice's node asks (\w+) \(node \w+, another node\) who it is:$", out, re.MULTILINE), (
        out
    )
    asked = re.search(r"alice's node asks (\w+)", out)
    assert asked is not None and f"whoami -> '{asked.group(1)}'" in out, out
    assert out.rstrip().endswith("done")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_hub_demo_with_two_workers_and_redis() -> None:
    out = _run()
    _check(out)
    assert len(re.findall(r"\[worker \d\] hub_demo:on_session on node \w+ \(hub connected\)", out)) == 2, out
    assert re.search(r"\[server\] \d\d:\d\d:\d\d stopped$", out, re.MULTILINE), out  # Ctrl-C stopped all


def test_hub_demo_in_process() -> None:
    _check(_run("--memory"))
