"""session_core does no I/O of its own: its modules import no sockets, event loops, threads
or clocks, and importing it loads none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import session_core

FORBIDDEN = {"socket", "asyncio", "trio", "selectors", "threading", "time", "random", "ssl"}
CORE = Path(session_core.__file__).parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_no_io() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) >= 10
    for path in modules:
        assert not _imports(path) & FORBIDDEN, path.name


def test_importing_the_core_loads_no_event_loop_or_socket() -> None:
    code = (
        "import sys, session_core, session_core.driver\n"
        "print(sorted(m for m in ('socket', 'asyncio', 'trio', 'selectors') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
