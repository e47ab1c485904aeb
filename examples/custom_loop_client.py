"""Embedding `session_core` in your own event loop: a client on a plain blocking socket.

No trio and no asyncio: a blocking socket, `selectors` to wait for input or for the next
deadline, and `time.monotonic()` as the clock. The same pattern fits any loop (a GUI's,
a game's, a select() loop in C with Python bindings): `Connection` does the protocol, the
loop moves bytes and keeps the time.

It talks to the demo server of the command line:

    session-py serve                     # in another terminal
    python examples/custom_loop_client.py [ws://127.0.0.1:8765/]

and calls `add` and `echo`, calls `fail` (an error response), calls `sleep` with a timeout
shorter than the sleep (the timer fires: `RequestTimedOut`, and the server is sent
`$/cancel`), waits for two `tick` notifications, then closes the session.

The driving order, after every input: take `events()`, write `data_to_send()`, close the
socket once `should_close_transport` is true, and sleep until `get_timer()` at the latest,
then call `handle_timer(now)`.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
from typing import Any

import attrs

from session_core import (
    Config,
    Connection,
    ConnectionClosed,
    ErrorResponseReceived,
    Event,
    HandshakeAccepted,
    Method,
    NotificationReceived,
    RemoteError,
    RequestTimedOut,
    ResponseReceived,
    State,
    UpgradeRejected,
)
from session_core.driver import parse_url, result_of


@attrs.frozen
class AddArgs:
    """The request of `add`."""

    a: int
    b: int


# The demo server's methods (`session-py serve --help`).
# (Annotated where a type checker cannot infer the generics: `Any` and unions.)
add: Method[AddArgs, int | float, str] = Method("add", request=AddArgs, response=int | float, error=str)
echo: Method[Any, Any, None] = Method("echo", request=Any, response=Any, error=None)
fail: Method[Any, None, str] = Method("fail", request=Any, response=None, error=str)
sleep = Method("sleep", request=float, response=None, error=str)
tick = Method("tick", request=int, response=None, error=None)

SLEEP_TIMEOUT = 0.5
"The timeout of the `sleep` request: shorter than the sleep, so the timer fires."
TICKS = 2
"How many `tick` notifications to wait for before closing."


def clock() -> float:
    """The connection's clock: any monotonic clock in seconds."""
    return time.monotonic()


class BlockingClient:
    """A `Connection` driven over a blocking socket, with `selectors` for the waits."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        target = parse_url(url)
        if target.secure:
            raise SystemExit("this example speaks ws:// only (wrap the socket with ssl for wss://)")
        self.sock = socket.create_connection((target.host, target.port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # docs/protocol.md asks for it
        self.sock.settimeout(None)  # blocking: the selector decides when to read
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        # Typed for `tick` only: its data arrives as an int. Other notifications (the
        # server's `welcome`) arrive as raw JSON.
        self.conn = Connection.client(
            target.host_header,
            target.target,
            now=clock(),
            methods=[tick],
            config=Config(keepalive_interval=5.0, close_timeout=2.0),
        )
        self.closed = False
        self.flush()  # the upgrade request

    def flush(self) -> None:
        """Write what the connection has for us; close the socket when it says so."""
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.conn.receive_eof()  # the peer is gone: the connection ends (1006)
        if self.conn.should_close_transport and not self.closed:
            self.closed = True
            self.selector.close()
            self.sock.close()

    def wait(self) -> None:
        """Block until input arrives or the next deadline passes, and feed the connection."""
        deadline = self.conn.get_timer()
        timeout = None if deadline is None else max(0.0, deadline - clock())
        if self.selector.select(timeout):
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if data:
                self.conn.receive_data(data, clock())
            else:
                self.conn.receive_eof()
        if deadline is not None and clock() >= deadline:
            self.conn.handle_timer(clock())
        self.flush()


def main(url: str = "ws://127.0.0.1:8765/") -> int:
    """Run the exchange; return 0 when everything arrived as expected."""
    client = BlockingClient(url)
    conn = client.conn
    labels: dict[int, str] = {}  # request id -> what to print
    ticks = 0
    ok = True
    while not client.closed:
        client.wait()
        for event in conn.events():
            if isinstance(event, HandshakeAccepted):
                print("connected", flush=True)
                # Requests go out at once; their outcomes come back as events, in any order.
                labels[conn.send_request(add, AddArgs(2, 3), now=clock())] = "add(2, 3)"
                labels[conn.send_request(echo, {"x": [1, 2, 3]}, now=clock())] = "echo"
                labels[conn.send_request(fail, None, now=clock())] = "fail"
                sleep_id = conn.send_request(sleep, 5.0, now=clock(), timeout=SLEEP_TIMEOUT)
                labels[sleep_id] = "sleep(5)"
                client.flush()
            elif isinstance(event, NotificationReceived):
                print(f"notification {event.method}: {event.data!r}", flush=True)
                if event.method == "tick":
                    ticks += 1
            elif isinstance(event, ResponseReceived | ErrorResponseReceived | RequestTimedOut):
                ok = show_outcome(labels.pop(event.request_id), event) and ok
            elif isinstance(event, UpgradeRejected):
                print(f"rejected: HTTP {event.status_code}", flush=True)
                ok = False
            elif isinstance(event, ConnectionClosed):
                print(f"closed ({event.code})", flush=True)
        if not labels and ticks >= TICKS and conn.state is State.OPEN:
            conn.close(now=clock())  # every outcome is in: say goodbye
            client.flush()
    return 0 if ok and not labels and ticks >= TICKS else 1


def show_outcome(label: str, event: Event) -> bool:
    """Print a request's outcome with `result_of`, as an adapter would return or raise it."""
    try:
        value = result_of(event)
    except RemoteError as exc:
        print(f"{label} -> error response {exc.error!r}", flush=True)
        return label == "fail"
    except TimeoutError:
        print(f"{label} -> timed out after {SLEEP_TIMEOUT} s (the server got $/cancel)", flush=True)
        return label == "sleep(5)"
    print(f"{label} -> {value!r}", flush=True)
    return label in ("add(2, 3)", "echo")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
