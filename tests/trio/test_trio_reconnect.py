"""Reconnecting on trio's clock: the backoff's delays, in virtual time, over real sockets."""

from __future__ import annotations

import socket

import pytest
import trio

import session_trio
from session_core import Backoff

from .support import running_server

#: No jitter: the delays are exact.
EXACT = Backoff(initial=1, factor=2, max_delay=5, jitter=0, reset_after=60)


@pytest.mark.autojump
async def test_delays_grow_to_the_cap_and_start_again_after_a_session_that_lived() -> None:
    served = 0

    async def on_session(session: session_trio.Session) -> None:
        nonlocal served
        served += 1
        if served == 5:
            await trio.sleep(100)  # lives longer than `reset_after`
            await session.close(1012, "restart")
        else:
            await session.close(1013, "try again later")

    starts: list[float] = []
    ends: list[float] = []
    async with running_server(on_session) as url, session_trio.reconnecting(url, backoff=EXACT) as sessions:
        async for session in sessions:
            starts.append(trio.current_time())
            if len(starts) == 7:
                break
            await session.wait_closed()
            ends.append(trio.current_time())
    waits = [start - end for start, end in zip(starts[1:], ends, strict=True)]
    # 1, 2, 4, then the cap (5); the 5th session lived 100 s: 1, 2 again.
    assert waits == pytest.approx([1, 2, 4, 5, 1, 2], abs=0.01)
    assert ends[4] - starts[4] == pytest.approx(100, abs=0.01)


@pytest.mark.autojump
async def test_max_retries_gives_up_after_the_delays() -> None:
    with socket.socket() as bound:  # bound, not listening: every attempt is refused
        bound.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{bound.getsockname()[1]}/"
        start = trio.current_time()
        with pytest.raises(OSError):
            async with session_trio.reconnecting(
                url, backoff=Backoff(initial=1, factor=3, jitter=0, max_retries=3)
            ) as sessions:
                async for _ in sessions:
                    raise AssertionError("no session")
    assert trio.current_time() - start == pytest.approx(1 + 3 + 9, abs=0.01)
    assert sessions.opened == 0
