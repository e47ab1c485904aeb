"""Testing your own protocol against `session_core`, with no sockets: a pattern to copy.

Your server logic (here `Store`, a versioned key-value store) is plain code; the methods
are declared once; a few lines of glue (`serve`) answer the requests a `Connection` hands
out. The test joins a client and a server `Connection` in memory (`Pair`), with the clock
standing still, and lets hypothesis generate sequences of calls, batch sizes (several
requests in flight) and the size of the chunks the bytes travel in. Every run goes through
the real protocol: the handshake, framing, JSON, ids, typed conversion, error responses.
It runs in milliseconds and fails with a minimal sequence of calls.

    pytest examples/test_my_protocol.py

(The project's own suite runs it too: `tests/test_examples_more.py`.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import (
    Connection,
    Event,
    HandshakeAccepted,
    InternalError,
    InvalidRequestData,
    Method,
    MethodError,
    RemoteError,
    RequestReceived,
    UpgradeRequested,
)
from session_core.driver import OUTCOMES, result_of

# -- your protocol -------------------------------------------------------------------------


@attrs.frozen
class Put:
    """The request of `kv.put`."""

    key: str
    value: int


put = Method("kv.put", request=Put, response=int, error=str)  # returns the key's new version
get = Method("kv.get", request=str, response=int, error=str)  # error "missing"
delete = Method("kv.delete", request=str, response=bool, error=None)  # True if it existed
METHODS: list[Method[Any, Any, Any]] = [put, get, delete]


class Store:
    """Your server logic, free of any I/O: what the tests are about."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.versions: dict[str, int] = {}

    def put(self, request: Put) -> int:
        """Store a value; return the key's new version (1, 2, ...)."""
        if not request.key:
            raise MethodError("empty key")
        self.values[request.key] = request.value
        self.versions[request.key] = self.versions.get(request.key, 0) + 1
        return self.versions[request.key]

    def get(self, key: str) -> int:
        """The value of `key`, or the error "missing"."""
        if key not in self.values:
            raise MethodError("missing")
        return self.values[key]

    def delete(self, key: str) -> bool:
        """Forget `key`'s value (its version goes on counting); True if it had one."""
        return self.values.pop(key, None) is not None


def serve(conn: Connection, store: Store, event: RequestReceived) -> None:
    """The glue: run the handler of a request and answer it, as an adapter would.

    `send_outcome` turns a `MethodError` into an error response and any other exception
    into -32603 (internal error).
    """
    handlers: dict[str, Callable[[Any], Any]] = {
        put.name: store.put,
        get.name: store.get,
        delete.name: store.delete,
    }
    try:
        result = handlers[event.method](event.data)
    except Exception as exc:
        conn.send_outcome(event.request_id, exception=exc)
    else:
        conn.send_outcome(event.request_id, result=result)


# -- the harness: two connections joined in memory ------------------------------------------

NOW = 0.0  # time stands still: no timeout or keepalive fires


class Pair:
    """A client and a server `Connection` exchanging bytes in memory, `chunk` bytes at a time."""

    def __init__(self, store: Store, *, chunk: int = 65536) -> None:
        self.store = store
        self.chunk = chunk
        self.client = Connection.client("kv.test", "/", now=NOW)
        self.server = Connection.server(now=NOW, methods=METHODS)
        self.outcomes: dict[int, Event] = {}
        self.opened = False
        self.pump()
        assert self.opened, "the handshake did not complete"

    def call(self, method: Method[Any, Any, Any] | str, data: Any) -> int:
        """Send a request (not pumped yet); return its id."""
        return self.client.send_request(method, data, now=NOW)

    def pump(self) -> None:
        """Move bytes both ways and act on the events until both sides are quiet."""
        while True:
            moved = self._move(self.client, self.server)
            for event in self.server.events():
                if isinstance(event, UpgradeRequested):
                    self.server.accept(now=NOW)
                elif isinstance(event, RequestReceived):
                    serve(self.server, self.store, event)
            moved = self._move(self.server, self.client) or moved
            for event in self.client.events():
                if isinstance(event, HandshakeAccepted):
                    self.opened = True
                elif isinstance(event, OUTCOMES):
                    assert event.request_id not in self.outcomes, "two outcomes for one request"
                    self.outcomes[event.request_id] = event
            if not moved:
                return

    def outcome(self, request_id: int) -> Any:
        """What `session.request()` would return for the request, or raise."""
        return result_of(self.outcomes.pop(request_id))

    def _move(self, source: Connection, target: Connection) -> bool:
        data = source.data_to_send()
        for start in range(0, len(data), self.chunk):
            target.receive_data(data[start : start + self.chunk], NOW)
        return bool(data)


# -- the tests -----------------------------------------------------------------------------

json_ints = st.integers(-(2**53), 2**53)  # what JSON peers agree on (the core refuses > 64 bits)
keys = st.sampled_from(["a", "b", "c", ""]) | st.text(max_size=4)
calls = st.one_of(
    st.tuples(st.just("put"), st.builds(Put, keys, json_ints)),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("delete"), keys),
)


@settings(max_examples=100, deadline=None)
@given(script=st.lists(calls, max_size=25), batch=st.integers(1, 5), chunk=st.integers(1, 200))
def test_the_store_behaves_like_a_dict(script: list[tuple[str, Any]], batch: int, chunk: int) -> None:
    """Whatever the calls, the batching and the chunking, each answer is the model's."""
    pair = Pair(Store(), chunk=chunk)
    model: dict[str, int] = {}
    versions: dict[str, int] = {}
    for start in range(0, len(script), batch):
        expected: dict[int, Any] = {}
        for name, data in script[start : start + batch]:  # `batch` requests in flight at once
            if name == "put":
                request_id = pair.call(put, data)
                if data.key:
                    model[data.key] = data.value
                    versions[data.key] = versions.get(data.key, 0) + 1
                    expected[request_id] = versions[data.key]
                else:
                    expected[request_id] = RemoteError("empty key")
            elif name == "get":
                request_id = pair.call(get, data)
                expected[request_id] = model[data] if data in model else RemoteError("missing")
            else:
                request_id = pair.call(delete, data)
                expected[request_id] = model.pop(data, None) is not None
        pair.pump()
        for request_id, want in expected.items():
            if isinstance(want, RemoteError):
                try:
                    pair.outcome(request_id)
                except RemoteError as exc:
                    assert exc.error == want.error
                else:
                    raise AssertionError(f"request {request_id} should have failed with {want.error!r}")
            else:
                assert pair.outcome(request_id) == want
    assert not pair.outcomes, "an outcome nobody asked for"


@settings(max_examples=30, deadline=None)
@given(data=st.one_of(st.none(), json_ints, st.text(), st.lists(json_ints, max_size=3)))
def test_data_that_does_not_fit_is_refused_before_the_store_sees_it(data: Any) -> None:
    """The typed server answers -32602 by itself: `Store.put` never gets a bad request."""
    store = Store()
    pair = Pair(store)
    request_id = pair.call("kv.put", data)  # raw JSON, by the method's name
    pair.pump()
    try:
        pair.outcome(request_id)
    except InvalidRequestData as exc:
        assert exc.code == -32602
    else:
        raise AssertionError("bad data was accepted")
    assert store.values == {}


def test_a_bug_in_the_store_answers_internal_error() -> None:
    """An unexpected exception becomes -32603 (its text stays private), and the session goes on."""
    store = Store()
    store.values = None  # type: ignore[assignment]  # a bug
    pair = Pair(store)
    request_id = pair.call(get, "a")
    pair.pump()
    try:
        pair.outcome(request_id)
    except InternalError as exc:
        assert exc.code == -32603
        assert "NoneType" not in exc.message
    else:
        raise AssertionError("the bug went unnoticed")
    store.values = {}  # fixed
    request_id = pair.call(put, Put("a", 1))
    pair.pump()
    assert pair.outcome(request_id) == 1
