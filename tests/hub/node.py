"""One server process of the cluster tests: `python -m tests.hub.node LOOP HUB_URL`.

Serves `tests.hub.apps:on_session` on a free loopback port with a hub whose timings are
short (a lease of 1 s), so that the tests of leases and recoveries take seconds. Prints
`READY <port> <node id>` on stdout once listening, logs the hub's lines on stderr, and
stops cleanly on SIGTERM. `LOOP` is `asyncio`, `uvloop` or `trio`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys

from session_core import Backoff
from session_hub import HubConfig

from .apps import on_session

CONFIG = HubConfig(
    lease=1.0,
    canary_interval=0.1,
    canary_timeout=0.6,
    operation_timeout=0.5,
    backoff=Backoff(initial=0.02, max_delay=0.2),
    request_timeout=5.0,
)


def _ready(port: int, node_id: str) -> None:
    print(f"READY {port} {node_id}", flush=True)


async def _asyncio_main(url: str) -> None:
    import session_asyncio  # noqa: PLC0415

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with session_asyncio.open_hub(url, config=CONFIG) as hub:
        server = await session_asyncio.serve(on_session, "127.0.0.1", 0, hub=hub)
        async with server:
            _ready(server.sockets[0].getsockname()[1], hub.node_id)
            await stop.wait()


async def _trio_main(url: str) -> None:
    import trio  # noqa: PLC0415

    import session_trio  # noqa: PLC0415

    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with session_trio.open_hub(url, config=CONFIG) as hub, trio.open_nursery() as nursery:
            serve = functools.partial(session_trio.serve, on_session, "127.0.0.1", 0, hub=hub)
            listeners = await nursery.start(serve)
            _ready(listeners[0].socket.getsockname()[1], hub.node_id)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(loop: str, url: str) -> None:
    """Serve until SIGTERM."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    if loop == "trio":
        import trio  # noqa: PLC0415

        trio.run(_trio_main, url)
    elif loop == "uvloop":
        import uvloop  # noqa: PLC0415

        uvloop.run(_asyncio_main(url))
    else:
        asyncio.run(_asyncio_main(url))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
