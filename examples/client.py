"""A session client on trio: the port of session-rs's client example.

It calls `echo`, `add` and `fail` on the server of `examples/server.py` (or of
session-rs's server example), prints the answers and the server's `welcome`, and closes.

    python examples/client.py [url]              # default ws://127.0.0.1:8080/
"""

from __future__ import annotations

import sys

import trio
from server import AddArgs, add, echo, fail, welcome

import session_trio
from session_core import RemoteError


async def main(url: str = "ws://127.0.0.1:8080/") -> None:
    """Call the three methods and print what comes back."""
    async with session_trio.connect(url) as session:
        welcomed = trio.Event()

        # Registered before the first `await`: the welcome cannot be missed.
        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            print(f"welcome: {text}")
            welcomed.set()

        print(f"echo: {await session.request(echo, {'x': [1, 2, 3]})}")
        total = await session.request(add, AddArgs(2, 3))
        print(f"add: {total}")
        try:
            await session.request(fail, None)
        except RemoteError as exc:
            print(f"fail: {exc.error}")
        with trio.fail_after(5):
            await welcomed.wait()


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080/")
