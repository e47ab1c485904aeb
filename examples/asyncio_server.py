"""A session server on asyncio: the port of session-rs's server example.

It serves three methods, `echo` (any JSON value back), `add` ({"a", "b"} -> their sum) and
`fail` (always the error "boom"), and sends a `welcome` notification ("hi") to each client.

    python examples/asyncio_server.py [host] [port]      # default 127.0.0.1 8080

Stop it with Ctrl-C. `examples/asyncio_client.py` talks to it, and so does session-rs's
client example.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import attrs

import session_asyncio
from session_core import Method, MethodError


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


async def on_session(session: session_asyncio.Session) -> None:
    """Serve one client: register the handlers, then greet it."""

    @session.on_request(echo)
    async def _echo(data: Any) -> Any:
        return data

    @session.on_request(add)
    async def _add(args: AddArgs) -> int:
        return args.a + args.b

    @session.on_request(fail)
    async def _fail(_: None) -> None:
        raise MethodError("boom")

    await session.notify(welcome, "hi")
    # Returning does not close the session: its handlers serve until the client leaves.


async def main(host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve until interrupted."""
    async with await session_asyncio.serve(on_session, host, port) as server:
        bound = server.sockets[0].getsockname()
        print(f"listening on ws://{bound[0]}:{bound[1]}/", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server closes its sessions
        asyncio.run(main(host, port))
