"""The less travelled paths of `Connection`: each one a behaviour a driver relies on."""

from __future__ import annotations

from typing import Any

import pytest

from session_core import (
    Accept,
    Config,
    Connection,
    ConnectionClosed,
    EncodingError,
    ErrorResponseReceived,
    HandshakeAccepted,
    InvalidMessageReceived,
    LocalProtocolError,
    Method,
    MethodError,
    NotificationReceived,
    RequestReceived,
    RequestRejected,
    State,
    UpgradeRejected,
)
from tests.helpers import (
    CLOSE,
    PING,
    SESSION_RS_UPGRADE,
    TEXT,
    SessionPair,
    accept_for,
    client_frame,
    frame,
    open_client,
    open_server,
    parse_frames,
)

point_method = Method("p", request=int, response=int, error=int)


def test_add_method_makes_an_untyped_connection_typed() -> None:
    pair = SessionPair()
    pair.server.add_method(point_method)
    pair.server.add_method(Method("n", request=int, response=None, error=None), requests=False)
    pair.client.send_request("p", "7")
    pair.client.send_request("n", 1)  # served as a notification only: not a request method
    pair.client.send_notification("n", 5)
    pair.pump()
    rejected = [e for e in pair.server_events if isinstance(e, RequestRejected)]
    assert [r.code for r in rejected] == [-32602, -32601]
    assert NotificationReceived(method="n", data=5) in pair.server_events


def test_decide_none_accepts() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    server.events()
    server.decide(None, now=0.0)
    assert server.state is State.OPEN
    with pytest.raises(LocalProtocolError):
        server.reject(403)
    with pytest.raises(LocalProtocolError):
        server.decide(Accept(), now=0.0)


def test_method_error_whose_value_cannot_be_sent_becomes_internal_error() -> None:
    pair = SessionPair(methods=[point_method])
    pair.client.send_request(point_method, 1)
    pair.pump()
    pair.server.send_outcome(1, exception=MethodError("not an int"))  # the error type is int
    pair.pump()
    (error,) = pair.client_events
    assert isinstance(error, ErrorResponseReceived) and error.code == -32603


def test_typed_send_with_a_value_of_the_wrong_type() -> None:
    method = Method("m", request=list[int], response=None, error=None)
    client = open_client()
    with pytest.raises(EncodingError):
        client.send_request(method, 5)  # type: ignore[misc]
    assert client.pending_requests == 0


def test_typed_values_that_do_not_fit_their_type_are_refused_and_leave_nothing_behind() -> None:
    method = Method("m", request=list[int], response=list[int], error=list[int])
    pair = SessionPair(methods=[method])
    with pytest.raises(EncodingError):
        pair.client.send_notification(method, 5)  # type: ignore[misc]
    assert pair.client.data_to_send() == b""
    request_id = pair.client.send_request(method, [1])
    pair.pump()
    assert pair.server.requests_in_flight == 1
    with pytest.raises(EncodingError):
        pair.server.send_response(request_id, 5)
    with pytest.raises(EncodingError):
        pair.server.send_error_response(request_id, 5)
    assert pair.server.data_to_send() == b""
    assert pair.server.requests_in_flight == 1  # still waits for a fitting answer
    pair.server.send_error_response(request_id, [2])
    pair.pump()
    assert pair.client_events == [ErrorResponseReceived(request_id=request_id, method="m", error=[2])]


def test_closing_before_the_handshake_just_ends() -> None:
    client = Connection.client("h:1", "/", now=0.0)
    client.close(now=0.0)
    assert client.events() == [ConnectionClosed(code=1006, reason="closed before the handshake completed")]
    assert client.should_close_transport


def test_informational_non_101_is_a_rejection_without_body() -> None:
    client = Connection.client("h:1", "/", now=0.0)
    client.data_to_send()
    client.receive_data(b"HTTP/1.1 100 Continue\r\n\r\n", 0.0)
    rejected, closed = client.events()
    assert rejected == UpgradeRejected(status_code=100, headers=(), body=b"")
    assert isinstance(closed, ConnectionClosed)


def test_cancel_for_an_unknown_id_or_with_bad_data() -> None:
    server = open_server()
    server.receive_data(
        client_frame(TEXT, b'{"type":"notification","method":"$/cancel","data":{"id":3}}'), 0.0
    )
    assert server.events() == []  # already answered: the cancel crossed our answer
    server.receive_data(client_frame(TEXT, b'{"type":"notification","method":"$/cancel","data":"x"}'), 0.0)
    (event,) = server.events()
    assert isinstance(event, InvalidMessageReceived)


def test_keepalive_without_timeout_just_pings() -> None:
    server = open_server(Config(keepalive_interval=5.0, keepalive_timeout=None))
    server.handle_timer(5.0)
    assert parse_frames(server.data_to_send())[0][0] == PING
    assert server.get_timer() == 10.0
    server.handle_timer(10.0)
    assert server.state is State.OPEN


def test_no_limit_no_keepalive() -> None:
    server = open_server(Config(max_message_size=None, keepalive_interval=None))
    assert server.get_timer() is None
    server.receive_data(
        client_frame(TEXT, b'{"type":"notification","method":"m","data":"' + b"x" * 70000 + b'"}'), 0.0
    )
    (event,) = server.events()
    assert isinstance(event, NotificationReceived)


def test_a_broken_frame_while_closing_ends_without_another_close() -> None:
    server = open_server()
    server.close(now=0.0)
    server.data_to_send()
    server.receive_data(b"\x8f\x80\x00\x00\x00\x00", 0.0)  # reserved opcode 0xF
    (closed,) = server.events()
    assert isinstance(closed, ConnectionClosed)
    assert server.data_to_send() == b""


def test_unmasked_client_frame_is_a_protocol_error_1002() -> None:
    server = open_server()
    server.receive_data(frame(TEXT, b"{}"), 0.0)
    (closed,) = server.events()
    assert isinstance(closed, ConnectionClosed) and closed.code == 1002


def test_eof_while_closing_keeps_our_code() -> None:
    client = open_client()
    client.close(4001, "done", now=0.0)
    client.receive_eof()
    assert client.events() == [ConnectionClosed(code=4001, reason="done")]


def test_non_ascii_text_counts_its_utf8_bytes() -> None:
    server = open_server(Config(max_message_size=60))
    text = '{"type":"notification","method":"m","data":"' + "é" * 10 + '"}'
    assert len(text) < 60 < len(text.encode())
    server.receive_data(client_frame(TEXT, text.encode()), 0.0)
    (closed,) = server.events()
    assert isinstance(closed, ConnectionClosed) and closed.code == 1009


def test_binary_message_over_the_limit() -> None:
    server = open_server(Config(max_message_size=10))
    server.receive_data(client_frame(0x2, b"x" * 11), 0.0)
    (closed,) = server.events()
    assert isinstance(closed, ConnectionClosed) and closed.code == 1009


def test_events_one_at_a_time_and_repr() -> None:
    pair = SessionPair(accept=False)
    pair.client.data_to_send()
    assert pair.client.next_event() is None
    assert "client handshaking" in repr(pair.client)
    open_one = open_client()
    open_one.receive_data(frame(TEXT, b'{"type":"notification","method":"a","data":1}'), 0.0)
    assert isinstance(open_one.next_event(), NotificationReceived)
    assert open_one.next_event() is None


def test_data_after_close_is_ignored() -> None:
    server = open_server()
    server.receive_data(client_frame(CLOSE), 0.0)
    server.events()
    server.receive_data(client_frame(TEXT, b"{}"), 0.0)
    server.receive_eof()
    server.handle_timer(100.0)
    assert server.events() == []


def test_untyped_answers_to_a_typed_request_method_by_name() -> None:
    pair = SessionPair(methods=[point_method])
    pair.client.send_request("p", 2)  # by name: the answer stays raw
    pair.pump()
    (request,) = pair.server_events
    assert isinstance(request, RequestReceived)
    pair.server.send_error_response(request.request_id, 9)
    pair.pump()
    (error,) = pair.client_events
    assert error == ErrorResponseReceived(request_id=1, method="p", error=9)


def test_handshake_events_on_the_client_pair() -> None:
    events: list[Any] = []
    pair = SessionPair(accept=False)
    pair.pump()
    pair.server.accept(now=0.0)
    pair.pump()
    events += pair.client_events
    assert isinstance(events[0], HandshakeAccepted)


def test_wait_for_start_holds_messages_that_came_with_the_handshake() -> None:
    # A client pipelines a request behind its upgrade; its handler is registered only
    # after the handshake, as an adapter's on_session does.
    server = Connection.server(now=0.0, methods=[], wait_for_start=True)
    request = client_frame(TEXT, b'{"type":"request","id":1,"method":"p","data":2}')
    server.receive_data(SESSION_RS_UPGRADE + request, 0.0)
    server.events()
    server.accept(now=0.0)
    assert server.events() == []
    server.receive_data(client_frame(TEXT, b'{"type":"notification","method":"p","data":3}'), 0.0)
    assert server.events() == []
    server.add_method(point_method)
    server.start()
    assert server.events() == [
        RequestReceived(request_id=1, method="p", data=2),
        NotificationReceived(method="p", data=3),
    ]


def test_wait_for_start_on_a_client_holds_frames_that_came_with_the_101() -> None:
    client = Connection.client("h:1", "/", now=0.0, methods=[], wait_for_start=True)
    key = next(
        line.split(b": ")[1]
        for line in client.data_to_send().split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    welcome = frame(TEXT, b'{"type":"notification","method":"p","data":1}')
    client.receive_data(accept_for(key) + welcome, 0.0)
    assert [type(e) for e in client.events()] == [HandshakeAccepted]
    client.add_method(point_method, requests=False)
    client.start()
    assert client.events() == [NotificationReceived(method="p", data=1)]


def test_keepalive_waits_while_reading_is_paused() -> None:
    server = open_server(Config(max_incoming_requests=1, keepalive_interval=5.0, keepalive_timeout=2.0))
    server.receive_data(
        client_frame(TEXT, b'{"type":"request","id":1,"method":"m","data":null}')
        + client_frame(TEXT, b'{"type":"request","id":2,"method":"m","data":null}'),
        0.0,
    )
    assert server.reading_paused
    server.handle_timer(5.0)  # ping
    server.handle_timer(7.0)  # no pong could be read: not a dead peer
    assert server.state is State.OPEN
    server.send_response(1, None)
    server.receive_data(client_frame(0xA, b""), 8.0)
    server.handle_timer(9.0)
    assert server.state is State.OPEN


def test_close_while_reading_is_paused_still_reads_the_peers_close() -> None:
    server = open_server(Config(max_incoming_requests=1))
    server.receive_data(
        client_frame(TEXT, b'{"type":"request","id":1,"method":"m","data":null}')
        + client_frame(TEXT, b'{"type":"request","id":2,"method":"m","data":null}')
        + client_frame(CLOSE),
        0.0,
    )
    assert server.reading_paused
    server.close(now=0.0)
    assert server.state is State.CLOSED  # the peer's close frame was already there
    assert server.events()[-1] == ConnectionClosed(code=1000, reason="")
