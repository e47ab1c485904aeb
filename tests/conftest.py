"""The whole test session: it refuses to run over a stale in-place compiled build.

`bash run.sh compile` puts compiled modules next to `session_core`'s sources, and Python
prefers them to the `.py` files: once a source is edited, the tests would silently run the
old code. So a session over an in-place build older than any of `session_core`'s sources
stops at once, saying how to fix it (unless `SESSION_PY_NO_EXTENSIONS` forces the sources).
"""

from __future__ import annotations

import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stale_build(root: Path = ROOT) -> str | None:
    """Why the in-place compiled build in `root` is older than the sources, or `None`."""
    if os.environ.get("SESSION_PY_NO_EXTENSIONS", "") not in ("", "0"):
        return None  # the compiled modules are not imported
    package = root / "session_core"
    built = [
        path
        for suffix in EXTENSION_SUFFIXES
        for path in [*package.rglob(f"*{suffix}"), *root.glob(f"session_core__mypyc*{suffix}")]
    ]
    if not built:
        return None
    oldest = min(path.stat().st_mtime for path in built)
    newer = sorted(str(p.relative_to(root)) for p in package.rglob("*.py") if p.stat().st_mtime > oldest)
    if not newer:
        return None
    return (
        f"{newer[0]} is newer than the in-place compiled build of session_core: "
        "run `bash run.sh compile` to rebuild it, or `bash run.sh pure` to remove it"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Stop the session before any test runs when the in-place build is stale."""
    problem = stale_build()
    if problem is not None:
        raise pytest.UsageError(problem)
