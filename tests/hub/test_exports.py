"""The hub's public names, and the sans-I/O rule of its deciding modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import session_hub

FORBIDDEN = {"socket", "asyncio", "trio", "anyio", "selectors", "threading", "time", "random", "coredis"}
SANS_IO = ("_envelope.py", "_node.py", "_errors.py")


def test_exports_are_pinned() -> None:
    assert sorted(session_hub.__all__) == sorted(
        [
            "QUEUE_FULL_CLOSE_CODE",
            "VERSION",
            "Envelope",
            "Gap",
            "Hub",
            "HubConfig",
            "HubError",
            "HubUnavailable",
            "InvalidEnvelope",
            "Kind",
            "LocalSession",
            "MessageTooLarge",
            "Node",
            "Outcome",
            "SessionNotFound",
            "decode",
            "encode",
            "open_hub",
        ]
    )
    assert all(hasattr(session_hub, name) for name in session_hub.__all__)
    assert session_hub.QUEUE_FULL_CLOSE_CODE == 1013


def test_deciding_modules_do_no_io() -> None:
    root = Path(session_hub.__file__).parent
    for name in SANS_IO:
        imported: set[str] = set()
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & FORBIDDEN, name


def test_in_process_hub_needs_no_coredis() -> None:
    code = "import sys, session_hub; print('coredis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
