"""A real browser as a client of our servers: headless Chromium loads `browser/page.html`,
whose script speaks the protocol on the browser's own `WebSocket` object.

The page reports what it saw to our server (a `report` request), so no DevTools driver is
needed: the test reads the server's record. Chromium runs in a process group of its own,
killed at the end whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BROWSER_PAGE
from .rawpeer import WELCOME
from .support import ADAPTERS, NOT_FOUND_NOPE, assert_quiet, serving

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@contextlib.contextmanager
def running_chromium(chromium: str, url: str, tmp_path: Path) -> Iterator[Path]:
    """Chromium on `url` with a fresh profile; yields the file that holds its output. The
    whole process group is killed at the end (SIGTERM, then SIGKILL), in bounded time."""
    log = tmp_path / "chromium.log"
    with log.open("wb") as out:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", url],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its helpers die with it
        )
    try:
        yield log
    finally:
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, sig)
            try:
                browser.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # Helpers left in the group (the browser itself is reaped): make sure.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, signal.SIGKILL)
        assert browser.returncode is not None, "chromium did not die"


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_chromium_websocket_at_our_server(
    adapter: str, chromium: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(adapter) as served:
        url = f"{BROWSER_PAGE.as_uri()}?port={served.port}"
        with running_chromium(chromium, url, tmp_path) as log:
            try:
                ((report,),) = served.record.wait("report", timeout=20)
                assert served.record.wait("closed") == [(4000, "browser done")]
            except AssertionError as exc:
                exc.add_note("chromium said: " + log.read_text(errors="replace")[-3000:])
                raise
    summary = {"confirm": {"result": "yes from the browser to browser"}, "nope": NOT_FOUND_NOPE}
    compact = json.dumps(summary, separators=(",", ":"))
    assert "Chrome/" in report["userAgent"]
    assert report["errors"] == []
    assert report["welcome"] == "hi"
    assert report["confirmed"] == summary
    assert report["received"] == [
        WELCOME,
        '{"type":"response","id":1,"result":{"x":[1,2,3],"s":"é"}}',
        '{"type":"response","id":2,"result":5}',
        '{"type":"errorresponse","id":3,"error":"boom"}',
        '{"type":"errorresponse","id":4,"error":' + json.dumps(NOT_FOUND_NOPE, separators=(",", ":")) + "}",
        '{"type":"request","id":1,"method":"confirm","data":"browser"}',
        '{"type":"request","id":2,"method":"nope","data":"browser"}',
        '{"type":"notification","method":"confirmed","data":' + compact + "}",
    ]
    assert served.record.wait("opened") == [("/browser",)]
    assert served.record.wait("asked") == [("browser", summary)]
    assert_quiet(caplog)
