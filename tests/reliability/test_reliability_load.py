"""Load, in short: `benchmarks/load.py` with a few hundred sessions per adapter.

One server process (a subprocess, so that its memory is its own) and this process as the
client, on the same adapter. Every session is open at once; each makes echo requests with
payloads unique to it and checks every answer, while the server sends it numbered
notifications: no answer lost, duplicated or mismatched, no notification lost or repeated,
no warning logged on either side. The memory per idle session comes from a second server
run under tracemalloc. `python -m benchmarks.load` is the long version (1,000 sessions).
"""

from __future__ import annotations

import pytest

from benchmarks import load

SESSIONS = 200
IDLE_TARGET = 12 * 1024
"Bytes of server heap per idle session that each adapter stays under."


@pytest.mark.parametrize("adapter", ["trio", "asyncio"])
def test_hundreds_of_concurrent_sessions_lose_nothing(adapter: str) -> None:
    figures = load.run_adapter(adapter, sessions=SESSIONS, requests=10, notifications=10, trace=False)
    print()
    print(load.report([figures]))
    assert figures.session_errors == []
    assert figures.opened == SESSIONS
    assert figures.answers_ok == SESSIONS * 10
    assert (figures.mismatched, figures.requests_failed) == (0, 0)
    assert figures.notifications_ok == SESSIONS * 10
    assert (figures.notifications_lost, figures.notifications_duplicated) == (0, 0)
    assert (figures.client_warnings, figures.server_warnings) == (0, 0)
    assert figures.clean
    assert figures.accept_seconds < 30.0  # generous: a loaded machine


@pytest.mark.parametrize("adapter", ["trio", "asyncio"])
def test_an_idle_session_costs_under_12_kib(adapter: str) -> None:
    # A server holds thousands of idle sessions: what each costs is what a server can hold.
    figures = load.run_adapter(adapter, sessions=SESSIONS, requests=0, notifications=0, untraced=False)
    per_session = figures.traced_per_idle_session
    print(f"\n{adapter}: {per_session / 1024:.1f} KiB of heap per idle session ({SESSIONS} sessions)")
    assert figures.clean
    # Closing them gives the memory back (a leak would keep a share of it per session).
    assert figures.traced_after_close - figures.traced_before < SESSIONS * load.RETURNED_PER_SESSION
    assert per_session < IDLE_TARGET
