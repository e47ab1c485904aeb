"""Fuzzing the core after a valid handshake: arbitrary bytes, frames and JSON.

The only outcomes allowed are the documented events; no exception escapes
`receive_data`, and everything the core writes is valid frames of valid UTF-8 JSON.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import Config, Connection, ConnectionClosed, Event
from tests.helpers import CLOSE, TEXT, client_frame, open_server, parse_frames

# Ours when we fail the connection, or any code a peer may validly put in its close frame.
OUR_CODES = {1002, 1005, 1006, 1007, 1009}
PEER_CODES = {*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)}
OPCODES = st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xF])

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["request", "response", "errorresponse", "notification", "x"]) | json_leaf,
        "id": st.integers(-2, 2**33) | json_leaf,
        "method": st.sampled_from(["echo", "$/cancel", ""]) | json_leaf,
        "data": json_value | st.fixed_dictionaries({"id": st.integers(0, 5)}),
        "result": json_value,
        "error": json_value
        | st.fixed_dictionaries({"code": st.integers(-32800, -31000), "message": st.text()}),
    },
)


def _check_output(conn: Connection, events: list[Event]) -> None:
    for event in events:
        if isinstance(event, ConnectionClosed):
            assert event.code in OUR_CODES | PEER_CODES, event
    for opcode, _, payload in parse_frames(conn.data_to_send()):
        if opcode == TEXT:
            json.loads(payload.decode("utf-8"))  # valid UTF-8, valid JSON
        if opcode == CLOSE and len(payload) >= 2:
            payload[2:].decode("utf-8")


def _answer_everything(conn: Connection, events: list[Event]) -> None:
    # A handler that echoes whatever it received, which must never put bad JSON out.
    for event in events:
        request_id = getattr(event, "request_id", None)
        if type(event).__name__ == "RequestReceived" and request_id is not None:
            conn.send_outcome(request_id, result=getattr(event, "data", None))


@given(st.lists(st.binary(max_size=64), max_size=8))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes(chunks: list[bytes]) -> None:
    server = open_server(Config(max_message_size=4096))
    for chunk in chunks:
        server.receive_data(chunk, 0.0)
        events = server.events()
        _answer_everything(server, events)
        _check_output(server, events)


@given(st.lists(st.tuples(OPCODES, st.binary(max_size=200), st.booleans()), max_size=8))
@settings(max_examples=200, deadline=None)
def test_arbitrary_frames(frames: list[tuple[int, bytes, bool]]) -> None:
    server = open_server(Config(max_message_size=4096))
    for opcode, payload, fin in frames:
        server.receive_data(client_frame(opcode, payload[:125] if opcode >= 8 else payload, fin=fin), 0.0)
        events = server.events()
        _answer_everything(server, events)
        _check_output(server, events)


@given(st.lists(messages | json_value, min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_arbitrary_json_messages(values: list[Any]) -> None:
    server = open_server()
    for value in values:
        text = json.dumps(value).encode()
        server.receive_data(client_frame(TEXT, text), 0.0)
        events = server.events()
        _answer_everything(server, events)
        _check_output(server, events)
        # JSON that is merely wrong never ends the session.
        assert not server.should_close_transport


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_arbitrary_text_frames(text: str) -> None:
    server = open_server()
    server.receive_data(client_frame(TEXT, text.encode("utf-8", "surrogatepass")), 0.0)
    events = server.events()
    _answer_everything(server, events)
    _check_output(server, events)
