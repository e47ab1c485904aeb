"""An asyncio client with timeouts and notifications.

It talks to the demo server of the command line, whose `sleep` method answers after a
given number of seconds and whose `tick` notification comes every second:

    session-py serve                          # in another terminal
    python examples/asyncio_client_timeouts.py [ws://127.0.0.1:8765/] [TICKS]

What it shows:

- `connect_timeout` bounds connecting and the handshake; `Config.request_timeout` is the
  default timeout of every request, `timeout=` overrides it for one;
- a request that times out raises the builtin `TimeoutError`, and the server is sent
  `$/cancel` (its handler is cancelled): nothing is left running on either side;
- `asyncio.timeout()` around several calls works too: cancelling a waiting `request()`
  gives it up and cancels it on the server;
- the session is still fine after timeouts; requests run concurrently;
- notifications go to a handler registered before the first `await`, here into an
  `asyncio.Queue` that the main task reads with a timeout.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import session_asyncio
from session_core import Config, Method

# The demo server's methods (`session-py serve --help`).
echo: Method[Any, Any, None] = Method("echo", request=Any, response=Any, error=None)
sleep = Method("sleep", request=float, response=None, error=str)
tick = Method("tick", request=int, response=None, error=None)


async def main(url: str = "ws://127.0.0.1:8765/", ticks: int = 3) -> None:
    """Run each kind of timeout once, then print `ticks` notifications."""
    # Every request gets 5 s unless it says otherwise: a server that never answers a
    # method (session-rs does not answer unknown ones) cannot hang us.
    config = Config(request_timeout=5.0, keepalive_interval=10.0, keepalive_timeout=10.0)
    async with session_asyncio.connect(url, config=config, connect_timeout=5.0) as session:
        ticked: asyncio.Queue[int] = asyncio.Queue()

        @session.on_notification(tick)  # registered before the first `await`
        async def _tick(count: int) -> None:
            ticked.put_nowait(count)

        print(f"echo: {await session.request(echo, 'hello')!r}")  # within the default 5 s

        # One request with its own timeout.
        try:
            await session.request(sleep, 2.0, timeout=0.2)
        except TimeoutError:
            print("sleep(2) with timeout=0.2: TimeoutError (the server was sent $/cancel)")

        # A deadline over several calls: the second one is cancelled when it expires.
        started = time.monotonic()
        try:
            async with asyncio.timeout(0.5):
                await session.request(sleep, 0.1)
                print("sleep(0.1): done")
                await session.request(sleep, 2.0)
        except TimeoutError:
            print(f"sleep(2) under asyncio.timeout(0.5): gave up after {time.monotonic() - started:.1f} s")

        # The session is fine: three requests at once take as long as the longest.
        started = time.monotonic()
        await asyncio.gather(*(session.request(sleep, 0.2) for _ in range(3)))
        print(f"3 concurrent sleep(0.2): {time.monotonic() - started:.1f} s")

        # Notifications, each awaited with a timeout of its own.
        for _ in range(ticks):
            count = await asyncio.wait_for(ticked.get(), timeout=5.0)
            print(f"tick {count}")
    print(f"closed ({session.close_code})")


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/"
    asyncio.run(main(url, int(sys.argv[2]) if len(sys.argv) > 2 else 3))
