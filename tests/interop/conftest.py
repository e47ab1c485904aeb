"""Outside peers: found, or skipped locally, or a failure under CI.

A test that needs a program this project did not write (node and its `ws` package, a
Chromium) asks for it through a fixture. When the program is missing, the test is skipped,
unless the environment variable `SESSION_PY_REQUIRE_PEERS=1` is set (`.ci/run` sets it):
then it fails, so that CI can never pass by skipping the interop tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
BROWSER_PAGE = HERE / "browser" / "page.html"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def peers_required() -> bool:
    """Whether a missing peer fails the test instead of skipping it."""
    return os.environ.get("SESSION_PY_REQUIRE_PEERS", "") == "1"


def missing_peer(what: str, hint: str) -> None:
    """Skip (locally) or fail (under `SESSION_PY_REQUIRE_PEERS=1`) for a missing peer."""
    message = f"{what} is missing ({hint})"
    if peers_required():
        pytest.fail(f"{message}; SESSION_PY_REQUIRE_PEERS=1 requires every interop peer")
    pytest.skip(message)


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, with the `ws` package installed in tests/interop/node."""
    found = shutil.which("node")
    if found is None:
        missing_peer("node", "install Node.js 18 or later")
        raise AssertionError("unreachable")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").is_file():
        missing_peer("the npm package ws", f"run `npm ci` in {NODE_DIR}")
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    """A Chromium executable."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found is not None:
            return found
    missing_peer("chromium", "apt-get install chromium")
    raise AssertionError("unreachable")
