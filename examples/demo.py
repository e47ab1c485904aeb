"""session-py on trio in one command: a server and a client talking, in one process.

    python examples/demo.py

It starts the example server (`examples/server.py`) on a free loopback port, connects a
client to it and prints every exchange: requests with a response and with an error
response, a notification each way, and a request from the server to the client. It exits
with status 0 when everything went as expected.
"""

from __future__ import annotations

import trio
from server import AddArgs, add, echo, fail, serve_methods, welcome

import session_trio
from session_core import Method, RemoteError

# Two more methods for the demo: one the client serves, one the server listens to.
whoami = Method("whoami", request=None, response=str, error=str)
note = Method("note", request=str, response=None, error=None)


def show(direction: str, text: str) -> None:
    """Print one exchange, with the direction it went."""
    print(f"  {direction:<16} {text}", flush=True)


async def demo() -> None:
    """Serve, connect, exchange every kind of message, shut down."""
    server_done = trio.Event()

    async def on_session(session: session_trio.Session) -> None:
        """The example server's session, plus a `note` handler that calls the client back."""
        serve_methods(session)  # echo, add, fail

        @session.on_notification(note)
        async def _note(text: str) -> None:
            show("client -> server", f"notification note({text!r})")
            # The server calls its client back.
            name = await session.request(whoami, None)
            show("server -> client", f"request whoami() returned {name!r}")
            server_done.set()

        await session.notify(welcome, "hi")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(session_trio.serve, on_session, "127.0.0.1", 0)
        listener = listeners[0]
        assert isinstance(listener, trio.SocketListener)
        port = listener.socket.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"
        print(f"server listening on {url}", flush=True)

        async with session_trio.connect(url) as session:
            print("client connected", flush=True)
            welcomed = trio.Event()

            @session.on_notification(welcome)
            async def _welcome(text: str) -> None:
                show("server -> client", f"notification welcome({text!r})")
                welcomed.set()

            @session.on_request(whoami)
            async def _whoami(_: None) -> str:
                return "the demo client"

            with trio.fail_after(10):
                await welcomed.wait()
                total = await session.request(add, AddArgs(2, 3))
                show("client -> server", f"request add(a=2, b=3) returned {total}")
                echoed = await session.request(echo, {"x": [1, 2, 3]})
                show("client -> server", f"request echo({{'x': [1, 2, 3]}}) returned {echoed}")
                try:
                    await session.request(fail, None)
                except RemoteError as exc:
                    show("client -> server", f"request fail() answered with the error {exc.error!r}")
                await session.notify(note, "hello from the client")
                await server_done.wait()
        print(f"client closed the session (close code {session.close_code})", flush=True)
        nursery.cancel_scope.cancel()  # the server shuts down
    print("demo finished: every exchange went as expected", flush=True)


if __name__ == "__main__":
    trio.run(demo)  # an unexpected answer raises, and the exit status is 1
