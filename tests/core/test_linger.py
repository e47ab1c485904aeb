"""Lingering after a failed connection, in virtual time: the engine says to keep reading
(`lingering`) until the peer's close frame, the end of the stream or the close timeout,
skipping whatever the peer still sends, from exactly where reading stopped."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import Config, ConnectionClosed, State
from tests import wire
from tests.helpers import CLOSE, PING, TEXT, client_frame, open_client, open_server, parse_frames

LIMIT = 1000
CONFIG = Config(max_message_size=LIMIT, close_timeout=5.0)


def _request(request_id: int) -> bytes:
    return client_frame(TEXT, json.dumps({"id": request_id, "method": "m", "data": None}).encode())


def _close_code(out: bytes) -> int | None:
    frames = parse_frames(out)
    assert frames[-1][0] == CLOSE
    return wire.parse_close(frames[-1][2])[0]


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def test_a_message_too_big_lingers_until_the_peer_s_close_frame() -> None:
    server = open_server(CONFIG)
    huge = client_frame(TEXT, b"x" * 50_000)  # streamed through wsproto: over the limit
    server.receive_data(huge[:3000], 1.0)
    assert server.events() == [ConnectionClosed(code=1009, reason=f"message over {LIMIT} bytes")]
    assert _close_code(server.data_to_send()) == 1009
    assert server.state is State.CLOSED and server.should_close_transport
    assert server.lingering
    assert server.get_timer() == 6.0  # the close timeout, from the end
    # The rest of the message, a ping and a request are skipped through, and ignored.
    rest = huge[3000:] + client_frame(PING, b"p") + _request(1)
    for start in range(0, len(rest), 4096):
        server.receive_data(rest[start : start + 4096], 2.0)
        assert server.lingering
    assert server.events() == [] and server.data_to_send() == b""
    # The peer's close frame ends the linger: the transport may close now.
    server.receive_data(client_frame(CLOSE, (1009).to_bytes(2, "big"))[:2], 2.0)
    assert not server.lingering and server.get_timer() is None
    assert server.events() == [] and server.data_to_send() == b""
    assert server.close_code == 1009


def test_invalid_utf8_in_a_read_that_holds_the_close_frame_does_not_linger() -> None:
    server = open_server(CONFIG)
    bad = client_frame(TEXT, b"\xff\xfe")
    server.receive_data(bad + _request(1) + client_frame(CLOSE, (1000).to_bytes(2, "big")), 1.0)
    assert server.events() == [ConnectionClosed(code=1007, reason="invalid UTF-8 in a text message")]
    assert _close_code(server.data_to_send()) == 1007
    assert server.should_close_transport and not server.lingering


def test_the_linger_is_bounded_by_the_close_timeout() -> None:
    server = open_server(CONFIG)
    server.receive_data(client_frame(TEXT, b"\xff") + client_frame(TEXT, b"y" * 500)[:10], 1.0)
    assert server.events()[-1] == ConnectionClosed(code=1007, reason="invalid UTF-8 in a text message")
    assert _close_code(server.data_to_send()) == 1007
    assert server.lingering and server.get_timer() == 6.0
    server.handle_timer(5.99)
    assert server.lingering
    server.handle_timer(6.0)
    assert not server.lingering and server.get_timer() is None
    assert server.events() == [] and server.data_to_send() == b""


def test_the_end_of_the_stream_ends_the_linger() -> None:
    server = open_server(CONFIG)
    server.receive_data(client_frame(TEXT, b"z" * 5000)[:1500], 1.0)
    assert server.events()[-1].code == 1009  # type: ignore[attr-defined]
    assert server.lingering
    server.receive_eof()
    assert not server.lingering and server.get_timer() is None
    assert server.events() == []


def test_no_linger_after_a_close_handshake_a_lost_connection_or_without_a_close_timeout() -> None:
    # The peer closed first: its close frame is in.
    server = open_server(CONFIG)
    server.receive_data(client_frame(CLOSE, (1000).to_bytes(2, "big")), 1.0)
    assert server.should_close_transport and not server.lingering
    # The connection was lost.
    server = open_server(CONFIG)
    server.receive_eof()
    assert server.should_close_transport and not server.lingering
    # Our close timed out.
    server = open_server(CONFIG)
    server.close(1001, now=1.0)
    server.handle_timer(6.0)
    assert server.should_close_transport and not server.lingering
    # No close timeout: no linger (it would be unbounded).
    server = open_server(Config(max_message_size=LIMIT, close_timeout=None))
    server.receive_data(client_frame(TEXT, b"z" * 5000)[:1500], 1.0)
    assert server.should_close_transport and not server.lingering


def test_a_failure_while_closing_lingers_until_the_close_deadline_not_later() -> None:
    server = open_server(CONFIG)
    server.close(1001, "going away", now=1.0)
    assert _close_code(server.data_to_send()) == 1001
    assert server.get_timer() == 6.0
    # The peer goes on streaming a message (ignored while closing), then breaks a frame.
    server.receive_data(client_frame(TEXT, b"a" * 3000) + client_frame(TEXT, b"\xc3"), 4.0)
    assert [type(event) for event in server.events()] == [ConnectionClosed]
    assert server.data_to_send() == b""  # no second close frame
    assert server.lingering and server.get_timer() == 6.0
    server.receive_data(client_frame(CLOSE), 4.5)
    assert not server.lingering


def test_a_client_lingers_too() -> None:
    client = open_client(CONFIG)
    client.receive_data(wire.server_frame(TEXT, b"q" * 3000)[:2000], 1.0)
    assert client.events()[-1].code == 1009  # type: ignore[attr-defined]
    assert client.lingering
    client.receive_data(wire.server_frame(TEXT, b"q" * 3000)[2000:] + wire.server_frame(CLOSE), 2.0)
    assert not client.lingering


def test_a_keepalive_timeout_does_not_linger() -> None:
    # A peer that answers no ping is not sending either: the end is not delayed.
    server = open_server(Config(keepalive_interval=10.0, keepalive_timeout=10.0, close_timeout=3.0))
    server.handle_timer(10.0)  # the ping
    server.data_to_send()
    server.handle_timer(20.0)  # no pong: 1011
    assert server.events()[-1].code == 1011  # type: ignore[attr-defined]
    assert server.should_close_transport and not server.lingering and server.get_timer() is None


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 70_000), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=12),
    first_cut=st.integers(1, 200),
)
def test_the_peer_s_close_frame_is_found_however_the_stream_is_cut(
    sizes: list[int], cuts: list[int], first_cut: int
) -> None:
    # Fails with a frame over the limit (16- and 64-bit lengths), then frames of every
    # length encoding; the close frame that follows is found wherever the reads cut.
    server = open_server(CONFIG)
    stream = client_frame(TEXT, b"o" * 70_000)
    stream += b"".join(client_frame(TEXT, b"k" * size) for size in sizes)
    stream += client_frame(CLOSE, (1009).to_bytes(2, "big"))
    head, rest = stream[: LIMIT + first_cut + 14], stream[LIMIT + first_cut + 14 :]
    server.receive_data(head, 1.0)
    assert server.events()[-1].code == 1009  # type: ignore[attr-defined]
    assert _close_code(server.data_to_send()) == 1009
    chunks = _chunks(rest, cuts)
    for index, chunk in enumerate(chunks):
        assert server.lingering, f"stopped lingering before the close frame (chunk {index})"
        server.receive_data(chunk, 2.0)
    assert not server.lingering
    assert server.events() == [] and server.data_to_send() == b""
