"""The fast framing path against wsproto: the same events and bytes for every input.

`_ws.WebSocket` parses complete single-frame text messages itself and gives everything else
to wsproto. With `fast_limit = -1` it gives wsproto everything, which makes wsproto the
oracle: any frame sequence, in any chunking, must produce the same events and output.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import Config, Connection, ConnectionClosed, Event
from tests.helpers import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    client_frame,
    frame,
    open_client,
    open_server,
    parse_frames,
)

texts = st.sampled_from(
    [
        b'{"type":"request","id":1,"method":"m","data":[1,2]}',
        b'{"type":"notification","method":"n","data":"\xc3\xa9"}',
        b'{"type":"response","id":1,"result":null}',
        b"not json",
        b"\xff\xfe",  # invalid UTF-8
        b'{"type":"notification","method":"big","data":"' + b"x" * 300 + b'"}',
        b"",
    ]
)
frames = st.one_of(
    st.tuples(st.just(TEXT), texts, st.just(True)),
    st.tuples(st.just(TEXT), texts, st.just(False)),
    st.tuples(st.just(CONTINUATION), texts, st.booleans()),
    st.tuples(st.sampled_from([PING, PONG]), st.binary(max_size=8), st.just(True)),
    st.tuples(st.just(BINARY), st.binary(max_size=8), st.booleans()),
    st.tuples(st.just(CLOSE), st.sampled_from([b"", b"\x03\xe8bye", b"\x03"]), st.just(True)),
    st.tuples(st.sampled_from([0x3, 0xB]), st.binary(max_size=4), st.just(True)),
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _run(
    conn: Connection, pieces: list[bytes], fast: bool
) -> tuple[list[Event], list[tuple[int, bool, bytes]]]:
    if not fast:
        conn._ws.fast_limit = -1
    events: list[Event] = []
    out = b""
    for piece in pieces:
        conn.receive_data(piece, 0.0)
        events += conn.events()
        out += conn.data_to_send()
    conn.receive_eof()
    events += conn.events()
    # A close frame's reason may be worded differently; its code may not.
    sent = [(op, fin, payload[:2] if op == CLOSE else payload) for op, fin, payload in parse_frames(out)]
    return [_comparable(e) for e in events], sent


def _comparable(event: Event) -> Event:
    # The reason text of a failure may be worded differently; its code may not.
    return ConnectionClosed(code=event.code, reason="") if isinstance(event, ConnectionClosed) else event


@given(st.lists(frames, max_size=10), st.lists(st.integers(0, 10_000), max_size=6))
@settings(max_examples=400, deadline=None)
def test_server_fast_path_matches_wsproto(sequence: list[tuple[int, bytes, bool]], cuts: list[int]) -> None:
    data = b"".join(client_frame(op, payload, fin=fin) for op, payload, fin in sequence)
    pieces = _chunks(data, cuts)
    config = Config(max_message_size=200)
    assert _run(open_server(config), pieces, fast=True) == _run(open_server(config), pieces, fast=False)


@given(st.lists(frames, max_size=10), st.lists(st.integers(0, 10_000), max_size=6))
@settings(max_examples=200, deadline=None)
def test_client_fast_path_matches_wsproto(sequence: list[tuple[int, bytes, bool]], cuts: list[int]) -> None:
    data = b"".join(frame(op, payload, fin=fin) for op, payload, fin in sequence)
    pieces = _chunks(data, cuts)
    fast_events, fast_out = _run(open_client(), pieces, fast=True)
    slow_events, slow_out = _run(open_client(), pieces, fast=False)
    assert fast_events == slow_events
    assert fast_out == slow_out  # parse_frames unmasks: payloads compare, not random masks


def test_masked_frames_round_trip_at_every_length_class() -> None:
    for size in (0, 1, 125, 126, 65535, 65536, 300_000):
        payload = b'{"type":"notification","method":"n","data":"' + b"y" * size + b'"}'
        server = open_server(Config(max_message_size=None))
        client = open_client(Config(max_message_size=None))
        client.send_notification("n", "y" * size)
        wire = client.data_to_send()
        assert parse_frames(wire) == [(TEXT, True, payload)]
        for start in range(0, len(wire), 7000):  # a large frame arrives over many reads
            server.receive_data(wire[start : start + 7000], 0.0)
        (event,) = server.events()
        assert getattr(event, "data", None) == "y" * size


# Payloads from 4 KiB on are unmasked and decoded in place (through a memoryview).
large_texts = st.sampled_from(
    [
        b'{"type":"notification","method":"big","data":"' + b"x" * 5000 + b'"}',
        b'{"type":"notification","method":"big","data":"' + "é".encode() * 40_000 + b'"}',
        b"\xff" + b"x" * 5000,  # invalid UTF-8 at the start of a large payload
        b"x" * 70_000 + b"\xc3",  # and cut at its very end
    ]
)
large_frames = st.one_of(
    frames,
    st.tuples(st.just(TEXT), large_texts, st.booleans()),
    st.tuples(st.just(CONTINUATION), large_texts, st.booleans()),
)


@given(st.lists(large_frames, max_size=6), st.lists(st.integers(0, 200_000), max_size=6))
@settings(max_examples=150, deadline=None)
def test_large_frames_match_wsproto(sequence: list[tuple[int, bytes, bool]], cuts: list[int]) -> None:
    config = Config(max_message_size=None)
    masked = b"".join(client_frame(op, payload, fin=fin) for op, payload, fin in sequence)
    pieces = _chunks(masked, cuts)
    assert _run(open_server(config), pieces, fast=True) == _run(open_server(config), pieces, fast=False)
    plain = b"".join(frame(op, payload, fin=fin) for op, payload, fin in sequence)
    pieces = _chunks(plain, cuts)
    assert _run(open_client(config), pieces, fast=True) == _run(open_client(config), pieces, fast=False)
