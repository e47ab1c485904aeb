"""What every peer of the end-to-end benchmark shares: codecs, messages, payloads, scenarios.

The hand-written peers speak session-rs's wire format exactly as session_core writes it:
compact JSON, `type` first, `{"type":"request","id":N,"method":"echo","data":...}` answered
by `{"type":"response","id":N,"result":...}`. Nothing here imports a WebSocket library, so
one missing library only makes its own rows unavailable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

HOST: Final = "127.0.0.1"
MAX_MESSAGE: Final = 4 * 1024 * 1024
"Message size limit given to every peer (the 1 MiB payload plus its envelope must fit)."
METHOD: Final = "echo"


@dataclass(frozen=True)
class Codec:
    """A JSON codec as a peer uses it: bytes out, bytes or text in."""

    name: str
    dumps: Callable[[Any], bytes]
    dumps_text: Callable[[Any], str]
    loads: Callable[[bytes | bytearray | memoryview | str], Any]
    text_native: bool
    "True when the codec produces `str` natively (stdlib json), bytes otherwise."


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    if isinstance(data, memoryview):
        data = bytes(data)
    return json.loads(data)


CODECS: Final[dict[str, Codec]] = {
    "orjson": Codec("orjson", orjson.dumps, _orjson_text, orjson.loads, text_native=False),
    "json": Codec("json", _json_bytes, _json_text, _json_loads, text_native=True),
}


# -- messages --------------------------------------------------------------------------------


def request_message(request_id: int, data: Any) -> dict[str, Any]:
    """A request as session-rs writes it (key order matters for the bytes: type first)."""
    return {"type": "request", "id": request_id, "method": METHOD, "data": data}


async def echo(data: Any) -> Any:
    """The method every server serves: its request data back."""
    return data


def echo_now(data: Any) -> Any:
    """`echo` for callback-based servers, which cannot await."""
    return data


ASYNC_HANDLERS: Final[dict[str, Callable[[Any], Awaitable[Any]]]] = {METHOD: echo}
SYNC_HANDLERS: Final[dict[str, Callable[[Any], Any]]] = {METHOD: echo_now}


def _not_found(message: dict[str, Any]) -> dict[str, Any]:
    text = f"method not found: {message.get('method')}"
    return {"type": "errorresponse", "id": message["id"], "error": {"code": -32601, "message": text}}


def answer_now(message: Any) -> dict[str, Any] | None:
    """What a hand-written server answers to one decoded message (None: no answer)."""
    if not isinstance(message, dict) or message.get("type") != "request":
        return None
    handler = SYNC_HANDLERS.get(message.get("method"))  # type: ignore[arg-type]
    if handler is None:
        return _not_found(message)
    return {"type": "response", "id": message["id"], "result": handler(message.get("data"))}


async def answer(message: Any) -> dict[str, Any] | None:
    """`answer_now` with the handler awaited, as a server with a receive loop writes it."""
    if not isinstance(message, dict) or message.get("type") != "request":
        return None
    handler = ASYNC_HANDLERS.get(message.get("method"))  # type: ignore[arg-type]
    if handler is None:
        return _not_found(message)
    return {"type": "response", "id": message["id"], "result": await handler(message.get("data"))}


class RemoteFailure(Exception):
    """The peer answered a request with an error response."""


class ConnectionLost(Exception):
    """The connection ended while requests were waiting for their answers."""


class Pending:
    """Hand-written id matching for asyncio clients: a dict of futures keyed by request id."""

    __slots__ = ("_futures", "_loop", "_next_id")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0

    def new(self) -> tuple[int, asyncio.Future[Any]]:
        """A fresh request id and the future its answer will resolve."""
        self._next_id += 1
        future = self._loop.create_future()
        self._futures[self._next_id] = future
        return self._next_id, future

    def resolve(self, message: Any) -> None:
        """Hand a decoded answer to whoever waits for it (others are ignored)."""
        if not isinstance(message, dict):
            return
        future = self._futures.pop(message.get("id"), None)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if message.get("type") == "response":
            future.set_result(message.get("result"))
        else:
            future.set_exception(RemoteFailure(repr(message.get("error"))))

    def fail_all(self, reason: str = "connection lost") -> None:
        """Fail every waiting request: the connection is gone."""
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason))


# -- payloads --------------------------------------------------------------------------------

SMALL_TEXT: Final = "hello, session"


def small_payload(seq: int) -> dict[str, Any]:
    """The data of a small request: a JSON object of about 60 bytes, distinct per request."""
    return {"seq": seq, "text": SMALL_TEXT, "values": [1, 2, 3], "ok": True}


def big_payloads(size: int) -> tuple[str, ...]:
    """Four distinct ASCII strings of `size` characters (a request uses `seq % 4`)."""
    base = ("abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1))[: size - 1]
    return tuple(letter + base for letter in "ABCD")


# -- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One load shape: connections, requests in flight on each, payload."""

    name: str
    title: str
    connections: int
    in_flight: int
    "Requests in flight on each connection."
    payload_size: int | None
    "Characters of a string payload, or None for the small JSON object."
    quick_count: int
    "Requests measured in a `--quick` run."
    quick_warmup: int

    @property
    def unit(self) -> str:
        """Its headline metric: requests per second, or MB/s of payload for big payloads."""
        return "MB/s" if self.payload_size is not None else "req/s"

    @property
    def latency(self) -> bool:
        """True when latency percentiles mean something (one request at a time)."""
        return self.connections == 1 and self.in_flight == 1 and self.payload_size is None


SCENARIOS: Final[tuple[Scenario, ...]] = (
    Scenario("latency", "1 in flight", 1, 1, None, quick_count=50, quick_warmup=10),
    Scenario("inflight100", "100 in flight, 1 connection", 1, 100, None, quick_count=300, quick_warmup=100),
    Scenario("conns50x10", "50 connections x 10 in flight", 50, 10, None, quick_count=500, quick_warmup=0),
    Scenario("payload64k", "64 KiB string payload", 1, 1, 64 * 1024, quick_count=8, quick_warmup=2),
    Scenario("payload1m", "1 MiB string payload", 1, 1, 1024 * 1024, quick_count=3, quick_warmup=1),
)
SCENARIOS_BY_NAME: Final = {scenario.name: scenario for scenario in SCENARIOS}
