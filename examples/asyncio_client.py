"""A session client on asyncio: the port of session-rs's client example.

It calls `echo`, `add` and `fail` on the server of `examples/asyncio_server.py` (or of
session-rs's server example), prints the answers and the server's `welcome`, and closes.

    python examples/asyncio_client.py [url]              # default ws://127.0.0.1:8080/
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import attrs

import session_asyncio
from session_core import Method, RemoteError


@attrs.frozen
class AddArgs:
    """The request of `add`."""

    a: int
    b: int


# Annotated: mypy cannot infer generics through the `Any` that `request=Any` gives.
echo: Method[Any, Any, str] = Method("echo", request=Any, response=Any, error=str)
add = Method("add", request=AddArgs, response=int, error=str)
fail = Method("fail", request=None, response=None, error=str)
welcome = Method("welcome", request=str, response=None, error=None)


async def main(url: str = "ws://127.0.0.1:8080/") -> None:
    """Call the three methods and print what comes back."""
    async with session_asyncio.connect(url) as session:
        welcomed = asyncio.Event()

        # Registered before the first `await`: the welcome cannot be missed.
        @session.on_notification(welcome)
        async def _welcome(text: str) -> None:
            print(f"welcome: {text}")
            welcomed.set()

        print(f"echo: {await session.request(echo, {'x': [1, 2, 3]})}")
        total: int = await session.request(add, AddArgs(2, 3))
        print(f"add: {total}")
        try:
            await session.request(fail, None)
        except RemoteError as exc:
            print(f"fail: {exc.error}")
        await asyncio.wait_for(welcomed.wait(), 5)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))
