"""Timers in virtual time, limits however the bytes are chunked, and closing."""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from session_core import (
    CancelRequested,
    Config,
    ConnectionClosed,
    LocalProtocolError,
    MethodError,
    PongReceived,
    RequestAborted,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    SessionClosed,
    State,
    TooManyPendingRequests,
    UnexpectedResponseReceived,
)
from tests.helpers import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    SessionPair,
    byte_by_byte,
    client_frame,
    frame,
    open_client,
    open_server,
    parse_frames,
)

# --- request timeouts -------------------------------------------------------------------


def test_request_timeout_fires_once_sends_cancel_and_reports_the_late_answer() -> None:
    pair = SessionPair()
    rid = pair.client.send_request("slow", None, now=pair.now, timeout=2.0)
    pair.pump()
    assert pair.client.get_timer() == 2.0
    pair.advance(1.9)
    assert pair.client_events == []
    pair.advance(0.1)
    # Exactly one outcome; the server heard `$/cancel` and answered -32800, which the
    # client expects and does not report.
    assert pair.client_events == [RequestTimedOut(request_id=rid, method="slow")]
    assert pair.server.requests_in_flight == 0
    pair.advance(10.0)
    assert pair.client_events == [RequestTimedOut(request_id=rid, method="slow")]


def test_late_answer_is_reported_never_delivered() -> None:
    client = open_client()
    rid = client.send_request("slow", None, now=0.0, timeout=1.0)
    client.handle_timer(1.0)
    assert client.events() == [RequestTimedOut(request_id=rid, method="slow")]
    sent = parse_frames(client.data_to_send())
    assert json.loads(sent[-1][2]) == {"type": "notification", "method": "$/cancel", "data": {"id": rid}}
    client.receive_data(frame(TEXT, b'{"type":"response","id":1,"result":"late"}'), 2.0)
    assert client.events() == [UnexpectedResponseReceived(request_id=rid, reason="timed out")]


def test_default_request_timeout_comes_from_config() -> None:
    client = open_client(Config(request_timeout=3.0))
    client.send_request("x", None, now=10.0)
    assert client.get_timer() == 13.0
    with pytest.raises(LocalProtocolError):
        client.send_request("x", None)  # a timeout needs `now`


def test_answered_request_leaves_no_timer() -> None:
    client = open_client(Config(keepalive_interval=None))
    client.send_request("x", None, now=0.0, timeout=5.0)
    client.receive_data(frame(TEXT, b'{"type":"response","id":1,"result":1}'), 1.0)
    assert client.get_timer() is None
    client.handle_timer(10.0)
    assert client.events() == [ResponseReceived(request_id=1, method="x", result=1)]


# --- keepalive --------------------------------------------------------------------------


def test_keepalive_counts_an_empty_pong_like_session_rs_sends() -> None:
    server = open_server(Config(keepalive_interval=10.0, keepalive_timeout=5.0))
    assert server.get_timer() == 10.0
    server.handle_timer(10.0)
    ((opcode, _, payload),) = parse_frames(server.data_to_send())
    assert opcode == PING and payload
    assert server.get_timer() == 15.0
    server.receive_data(client_frame(PONG, b""), 12.0)  # empty, not an echo
    assert server.events() == []
    assert server.get_timer() == 20.0
    server.handle_timer(15.0)
    assert server.state is State.OPEN


def test_keepalive_closes_a_peer_that_stops_answering() -> None:
    pair = SessionPair(server_config=Config(keepalive_interval=10.0, keepalive_timeout=5.0))
    pair.advance(12.0)  # the client answered the first ping by itself
    assert pair.server.state is State.OPEN
    assert pair.server.get_timer() == 20.0
    # From now on the client is silent: the server's bytes never reach it.
    pair.server.handle_timer(20.0)
    assert parse_frames(pair.server.data_to_send())[0][0] == PING
    pair.server.handle_timer(24.9)
    assert pair.server.events() == []
    pair.server.handle_timer(25.0)
    (closed,) = pair.server.events()
    assert closed == ConnectionClosed(code=1011, reason="keepalive ping timeout")
    assert pair.server.should_close_transport


def test_user_ping_gets_its_pong() -> None:
    pair = SessionPair()
    first, second = pair.client.send_ping(), pair.client.send_ping()
    pair.pump()
    assert pair.client_events == [PongReceived(ping_id=first), PongReceived(ping_id=second)]


def test_an_empty_pong_acknowledges_the_oldest_ping() -> None:
    client = open_client()
    first, second = client.send_ping(), client.send_ping()
    client.receive_data(frame(PONG), 0.0)
    assert client.events() == [PongReceived(ping_id=first)]
    client.receive_data(frame(PONG), 0.0)
    assert client.events() == [PongReceived(ping_id=second)]
    client.receive_data(frame(PONG), 0.0)  # unsolicited pong: nothing to acknowledge
    assert client.events() == []


def test_pings_from_the_peer_are_answered_with_their_payload() -> None:
    server = open_server()
    server.receive_data(client_frame(PING, b"abc"), 0.0)
    assert parse_frames(server.data_to_send()) == [(PONG, True, b"abc")]


# --- limits -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
def test_oversized_message_closes_1009_the_same_however_chunked(split: bool) -> None:
    server = open_server(Config(max_message_size=1000))
    fits = client_frame(TEXT, b'{"type":"notification","method":"m","data":"' + b"x" * 900 + b'"}')
    too_big = client_frame(TEXT, b'{"type":"notification","method":"m","data":"' + b"x" * 1000 + b'"}')
    for piece in byte_by_byte(fits + too_big) if split else [fits + too_big]:
        server.receive_data(piece, 0.0)
    events = server.events()
    assert len(events) == 2
    assert events[1] == ConnectionClosed(code=1009, reason="message over 1000 bytes")
    (close,) = parse_frames(server.data_to_send())
    assert close[0] == CLOSE and close[2][:2] == (1009).to_bytes(2, "big")


def test_oversized_message_is_refused_before_it_is_whole() -> None:
    server = open_server(Config(max_message_size=1000))
    head = client_frame(TEXT, b"x" * 10_000_000)[:2000]  # 10 MB announced, 2 kB arrived
    server.receive_data(head, 0.0)
    assert server.events() == [ConnectionClosed(code=1009, reason="message over 1000 bytes")]


def test_fragments_count_toward_the_limit_together() -> None:
    server = open_server(Config(max_message_size=100))
    pieces = [client_frame(TEXT, b"x" * 60, fin=False), client_frame(0, b"x" * 60)]
    server.receive_data(b"".join(pieces), 0.0)
    assert server.events()[-1].code == 1009  # type: ignore[attr-defined]


def test_reading_pauses_at_the_in_flight_bound_and_resumes_on_answers() -> None:
    server = open_server(Config(max_incoming_requests=2))
    burst = b"".join(
        client_frame(TEXT, b'{"type":"request","id":%d,"method":"m","data":null}' % i) for i in range(1, 6)
    )
    server.receive_data(burst, 0.0)
    assert [e.request_id for e in server.events()] == [1, 2]  # type: ignore[attr-defined]
    assert server.reading_paused
    server.receive_data(client_frame(PING), 0.0)  # a driver that kept reading: held, not lost
    server.send_response(1, None)
    assert [e.request_id for e in server.events()] == [3]  # type: ignore[attr-defined]
    assert server.reading_paused
    server.send_response(2, None)
    server.send_response(3, None)
    assert [e.request_id for e in server.events()] == [4, 5]  # type: ignore[attr-defined]
    server.send_response(4, None)
    assert not server.reading_paused
    sent = parse_frames(server.data_to_send())
    assert (PONG, True, b"") in sent
    assert server.requests_in_flight == 1


def test_pending_request_bound() -> None:
    client = open_client(Config(max_pending_requests=2))
    client.send_request("a", None)
    client.send_request("b", None)
    with pytest.raises(TooManyPendingRequests):
        client.send_request("c", None)


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Config(max_message_size=0)
    with pytest.raises(ValueError):
        Config(keepalive_interval=-1.0)


# --- closing ----------------------------------------------------------------------------


def test_close_handshake_with_code_and_reason() -> None:
    pair = SessionPair()
    rid = pair.client.send_request("x", None)
    pair.client.close(4000, "bye", now=0.0)
    assert pair.client.events() == [RequestAborted(request_id=rid, method="x", code=4000, reason="bye")]
    assert pair.client.state is State.CLOSING
    with pytest.raises(SessionClosed):
        pair.client.send_request("x", None)
    pair.pump()
    assert pair.server_events[-1] == ConnectionClosed(code=4000, reason="bye")
    assert pair.client_events[-1] == ConnectionClosed(code=4000, reason="bye")
    assert (pair.client.state, pair.server.state) == (State.CLOSED, State.CLOSED)


def test_empty_close_frame_is_a_normal_end_1005_answered_without_code() -> None:
    server = open_server()
    server.receive_data(client_frame(CLOSE), 0.0)
    assert server.events() == [ConnectionClosed(code=1005, reason="")]
    assert parse_frames(server.data_to_send()) == [(CLOSE, True, b"")]


def test_end_of_stream_without_close_is_1006_and_fails_pending_requests() -> None:
    client = open_client()
    rid = client.send_request("x", None)
    client.receive_eof()
    assert client.events() == [
        RequestAborted(request_id=rid, method="x", code=1006, reason="connection lost"),
        ConnectionClosed(code=1006, reason="connection lost"),
    ]


def test_a_peer_that_bounces_every_close_frame() -> None:
    client = open_client()
    client.close(now=0.0)
    client.data_to_send()
    # session-rs answers every close frame with another and never closes TCP.
    client.receive_data(frame(CLOSE) + frame(CLOSE) + frame(CLOSE), 0.0)
    assert client.events() == [ConnectionClosed(code=1000, reason="")]
    assert client.data_to_send() == b""  # no more close frames from us
    assert client.should_close_transport  # we close TCP ourselves
    client.receive_data(frame(CLOSE), 0.0)  # ignored after the end
    assert client.events() == []


def test_close_timeout_ends_a_close_the_peer_never_answers() -> None:
    client = open_client(Config(close_timeout=3.0))
    client.close(1001, "going away", now=5.0)
    assert client.get_timer() == 8.0
    client.handle_timer(8.0)
    assert client.events() == [ConnectionClosed(code=1001, reason="going away")]
    assert client.should_close_transport


def test_close_is_idempotent_and_checks_its_code() -> None:
    client = open_client()
    with pytest.raises(LocalProtocolError):
        client.close(1005, now=0.0)
    with pytest.raises(LocalProtocolError):
        client.close(1000, "x" * 124, now=0.0)
    client.close(now=0.0)
    client.close(now=0.0)
    assert len(parse_frames(client.data_to_send())) == 1


def test_server_receives_close_then_nothing_more_is_processed() -> None:
    server = open_server()
    server.receive_data(
        client_frame(CLOSE, (1000).to_bytes(2, "big") + b"done")
        + client_frame(TEXT, b'{"type":"request","id":1,"method":"m","data":1}'),
        0.0,
    )
    assert server.events() == [ConnectionClosed(code=1000, reason="done")]
    assert not any(isinstance(e, RequestReceived) for e in server.events())


def _request(request_id: int) -> bytes:
    return client_frame(TEXT, b'{"type":"request","id":%d,"method":"m","data":null}' % request_id)


def test_a_cancel_read_on_resuming_is_answered_and_reading_goes_on() -> None:
    # Reading resumes from an answer; the next message cancels another request in flight,
    # which is answered (-32800) from within that same read: it must not resume again.
    server = open_server(Config(max_incoming_requests=2))
    cancel = client_frame(TEXT, b'{"type":"notification","method":"$/cancel","data":{"id":2}}')
    server.receive_data(_request(1) + _request(2) + cancel + _request(3), 0.0)
    assert [e.request_id for e in server.events()] == [1, 2]  # type: ignore[attr-defined]
    server.send_response(1, None)
    assert server.events() == [
        CancelRequested(request_id=2),
        RequestReceived(request_id=3, method="m", data=None),
    ]
    assert server.requests_in_flight == 1
    assert not server.reading_paused
    answers = [json.loads(payload) for _, _, payload in parse_frames(server.data_to_send())]
    assert [(a["id"], a["type"]) for a in answers] == [(1, "response"), (2, "errorresponse")]
    assert answers[1]["error"]["code"] == -32800


@pytest.mark.parametrize("answer", ["error", "protocol error", "outcome"])
def test_every_kind_of_answer_resumes_reading(answer: str) -> None:
    server = open_server(Config(max_incoming_requests=1))
    server.receive_data(_request(1) + _request(2), 0.0)
    assert [e.request_id for e in server.events()] == [1]  # type: ignore[attr-defined]
    assert server.reading_paused
    if answer == "error":
        server.send_error_response(1, "no")
    elif answer == "protocol error":
        server.send_protocol_error(1, -32603, "internal error")
    else:
        server.send_outcome(1, exception=MethodError("no"))
    assert [e.request_id for e in server.events()] == [2]  # type: ignore[attr-defined]
    assert server.reading_paused  # at the bound again, with request 2


def test_an_idle_open_session_keeps_no_handshake_objects() -> None:
    # Issue 12: many idle sessions must stay small. Once open, the HTTP handshake's
    # parser and buffers are let go: an open client and server hold about 9 KB together;
    # keeping wsproto's handshake objects would make it about 17 KB.
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pair = SessionPair()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert pair.client.state is State.OPEN
    assert held < 12 * 1024, f"an open client and server hold {held} bytes"


def test_a_late_answer_to_a_cancelled_request_leaves_reading_paused() -> None:
    server = open_server(Config(max_incoming_requests=2))
    cancel = client_frame(TEXT, b'{"type":"notification","method":"$/cancel","data":{"id":1}}')
    server.receive_data(_request(1) + cancel + _request(2) + _request(3) + _request(4), 0.0)
    assert [type(e).__name__ for e in server.events()] == ["RequestReceived", "CancelRequested"] + [
        "RequestReceived"
    ] * 2
    assert server.reading_paused  # 2 and 3 in flight; 4 waits
    server.data_to_send()
    server.send_response(1, None)  # the handler lost the race with the cancel: dropped
    server.send_error_response(1, "late")
    server.send_protocol_error(1, -32603, "late")
    assert server.events() == []
    assert server.data_to_send() == b""
    assert server.reading_paused
    server.send_response(2, None)
    assert [e.request_id for e in server.events()] == [4]  # type: ignore[attr-defined]


def test_a_fragmented_message_after_our_close_is_ignored() -> None:
    server = open_server()
    server.close(now=0.0)
    server.receive_data(client_frame(TEXT, b'{"type":', fin=False) + client_frame(0, b'"x"}'), 0.0)
    assert server.events() == []
    server.receive_data(client_frame(CLOSE), 0.0)
    assert server.events() == [ConnectionClosed(code=1000, reason="")]
