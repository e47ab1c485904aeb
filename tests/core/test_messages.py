"""Messages, correlation, typing and bad input, through a client/server pair in memory."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import (
    CancelRequested,
    Config,
    ConnectionClosed,
    EncodingError,
    ErrorCode,
    ErrorResponseReceived,
    Event,
    InvalidMessageReceived,
    InvalidResponseReceived,
    LocalProtocolError,
    Method,
    MethodError,
    NotificationReceived,
    RequestReceived,
    RequestRejected,
    ResponseReceived,
    UnexpectedResponseReceived,
)
from session_core._messages import MAX_ID
from session_core._outgoing import IdAllocator
from tests.helpers import (
    BINARY,
    CONTINUATION,
    TEXT,
    Chunker,
    SessionPair,
    byte_by_byte,
    client_frame,
    frame,
    open_server,
    parse_frames,
    whole,
)


@attrs.frozen
class AddArgs:
    a: int
    b: int


add = Method("add", request=AddArgs, response=int, error=str)
# mypy reads a bare `Any` argument as a "special form" it cannot solve against later:
# methods with `Any` types are annotated.
echo: Method[Any, Any, str] = Method("echo", request=Any, response=Any, error=str)
tick = Method("tick", request=int, response=None, error=None)
confirm = Method("confirm", request=str, response=bool, error=None)


def _of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def _exchange(chunker: Chunker) -> None:
    pair = SessionPair(methods=[add, echo, tick], client_methods=[confirm, tick], chunker=chunker)
    # client -> server: request, error response, notification
    first = pair.client.send_request(add, AddArgs(2, 3))
    second = pair.client.send_request(add, AddArgs(-1, 3))
    pair.client.send_notification(tick, 7)
    pair.pump()
    requests = _of(pair.server_events, RequestReceived)
    assert [r.data for r in requests] == [AddArgs(2, 3), AddArgs(-1, 3)]
    assert _of(pair.server_events, NotificationReceived) == [NotificationReceived(method="tick", data=7)]
    pair.server.send_outcome(requests[0].request_id, result=5)
    pair.server.send_outcome(requests[1].request_id, exception=MethodError("negative"))
    # server -> client: request, notification
    asked = pair.server.send_request(confirm, "sure?")
    pair.server.send_notification(tick, 8)
    pair.pump()
    assert _of(pair.client_events, ResponseReceived) == [
        ResponseReceived(request_id=first, method="add", result=5)
    ]
    assert _of(pair.client_events, ErrorResponseReceived) == [
        ErrorResponseReceived(request_id=second, method="add", error="negative")
    ]
    (question,) = _of(pair.client_events, RequestReceived)
    assert question.data == "sure?"
    assert _of(pair.client_events, NotificationReceived) == [NotificationReceived(method="tick", data=8)]
    pair.client.send_response(question.request_id, True)
    pair.pump()
    assert _of(pair.server_events, ResponseReceived) == [
        ResponseReceived(request_id=asked, method="confirm", result=True)
    ]
    # Ids of the two directions are independent: both sides started at 1.
    assert first == 1 and asked == 1


@pytest.mark.parametrize("chunker", [whole, byte_by_byte], ids=["whole", "byte-by-byte"])
def test_every_message_kind_both_ways(chunker: Chunker) -> None:
    _exchange(chunker)


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_every_message_kind_in_random_chunks(data: st.DataObject) -> None:
    def random_chunks(payload: bytes) -> list[bytes]:
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(payload) - 1)), max_size=8)))
        edges = [0, *[c for c in cuts if c < len(payload)], len(payload)]
        return [payload[a:b] for a, b in itertools.pairwise(edges) if b > a]

    _exchange(random_chunks)


def test_ids_count_from_one_and_wrap_skipping_pending() -> None:
    ids = IdAllocator()
    assert [ids.allocate(set()) for _ in range(3)] == [1, 2, 3]
    ids._next = MAX_ID - 1
    assert ids.allocate({MAX_ID}) == MAX_ID - 1  # MAX_ID is pending: skipped
    assert ids.allocate({MAX_ID, 1, 2}) == 3  # wraps to 1, skipping pending MAX_ID, 1 and 2
    assert ids.allocate(set()) == 4


def test_pending_ids_are_never_reused() -> None:
    pair = SessionPair()
    ids = [pair.client.send_request("x", i) for i in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    pair.client._outgoing._ids._next = 3
    assert pair.client.send_request("x", 0) == 6


def test_unknown_method_and_invalid_data_are_answered_by_the_core() -> None:
    pair = SessionPair(methods=[add])
    unknown = pair.client.send_request("nope", 1)
    bad = pair.client.send_request("add", {"a": "2", "b": 3})
    pair.pump()
    rejected = _of(pair.server_events, RequestRejected)
    assert [(r.request_id, r.code) for r in rejected] == [(unknown, -32601), (bad, -32602)]
    assert not _of(pair.server_events, RequestReceived)
    errors = _of(pair.client_events, ErrorResponseReceived)
    assert [(e.code, e.message) for e in errors] == [
        (-32601, "method not found: nope"),
        (-32602, rejected[1].message),
    ]
    assert pair.server.requests_in_flight == 0


def test_untyped_mode_delivers_raw_json() -> None:
    pair = SessionPair()
    pair.client.send_request("anything", {"deep": [1, {"x": None}]})
    pair.pump()
    (request,) = pair.server_events
    assert request == RequestReceived(request_id=1, method="anything", data={"deep": [1, {"x": None}]})


def test_response_that_does_not_fit_is_an_outcome_of_its_own() -> None:
    pair = SessionPair()
    pair.client.send_request(add, AddArgs(1, 1))
    pair.pump()
    pair.server.send_response(1, "not an int")
    pair.pump()
    (invalid,) = pair.client_events
    assert isinstance(invalid, InvalidResponseReceived)
    assert invalid.request_id == 1


def test_answer_to_unknown_id_is_reported_and_not_fatal() -> None:
    pair = SessionPair()
    pair.client.send_request("x", None)
    pair.pump()
    server = pair.server
    server.receive_data(b"", 0.0)
    # A peer answering a request we never sent.
    pair.client.receive_data(parse_free_frame('{"type":"response","id":99,"result":1}'), 0.0)
    assert pair.client.events() == [UnexpectedResponseReceived(request_id=99, reason="unknown id")]
    pair.server.send_response(1, "fine")
    pair.pump()
    assert _of(pair.client_events, ResponseReceived)


def parse_free_frame(text: str) -> bytes:
    """An unmasked text frame, as a server sends it."""
    return frame(TEXT, text.encode())


def test_duplicate_request_id_in_flight_is_reported_not_dispatched() -> None:
    server = open_server()
    request = client_frame(TEXT, b'{"type":"request","id":4,"method":"m","data":1}')
    server.receive_data(request + request, 0.0)
    first, second = server.events()
    assert isinstance(first, RequestReceived)
    assert isinstance(second, InvalidMessageReceived)


def test_fragmented_message_is_accepted() -> None:
    server = open_server()
    server.receive_data(
        client_frame(TEXT, b'{"type":"notifi', fin=False)
        + client_frame(CONTINUATION, b'cation","method":"m",', fin=False)
        + client_frame(CONTINUATION, b'"data":"\xc3\xa9"}'),
        0.0,
    )
    assert server.events() == [NotificationReceived(method="m", data="é")]


def test_binary_messages_are_ignored_and_reported() -> None:
    server = open_server()
    server.receive_data(client_frame(BINARY, b"\x00\x01"), 0.0)
    (event,) = server.events()
    assert isinstance(event, InvalidMessageReceived)
    assert not server.should_close_transport


def test_invalid_utf8_fails_the_connection_with_1007() -> None:
    server = open_server()
    server.receive_data(client_frame(TEXT, b'{"type":"\xff"}'), 0.0)
    (closed,) = server.events()
    assert isinstance(closed, ConnectionClosed)
    assert closed.code == 1007
    assert server.should_close_transport
    assert parse_frames(server.data_to_send())[0][2][:2] == (1007).to_bytes(2, "big")


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"type":"request","id":1,"method":"m","data":NaN}',
        b'{"type":"request","id":1,"method":"m","data":"\\ud800"}',
        b'{"type":"request","id":1,"method":"m","data":1e999}',
        b"",
        b"null",
        b'"just a string"',
        b'{"type":[],"id":1}',
        b'{"type":{"a":1}}',
    ],
    ids=["deep", "nan", "lone-surrogate", "infinity", "empty", "null", "string", "list-type", "dict-type"],
)
def test_json_that_breaks_naive_parsers_is_reported(text: bytes) -> None:
    server = open_server()
    server.receive_data(client_frame(TEXT, text), 0.0)
    (event,) = server.events()
    assert isinstance(event, InvalidMessageReceived)
    assert not server.should_close_transport


def test_nothing_invalid_goes_out() -> None:
    pair = SessionPair(methods=[echo])
    with pytest.raises(EncodingError):
        pair.client.send_request("echo", float("nan"))
    with pytest.raises(EncodingError):
        pair.client.send_notification("echo", "\ud800")
    assert pair.client.data_to_send() == b""
    assert pair.client.pending_requests == 0
    pair.client.send_request(echo, 1)
    pair.pump()
    (request,) = pair.server_events
    assert isinstance(request, RequestReceived)
    with pytest.raises(EncodingError):
        pair.server.send_response(request.request_id, [float("inf")])
    # The request still waits: a handler wrapper can answer -32603 instead.
    pair.server.send_outcome(request.request_id, result=[float("inf")])
    pair.pump()
    (error,) = pair.client_events
    assert isinstance(error, ErrorResponseReceived)
    assert error.code == ErrorCode.INTERNAL_ERROR


def test_handler_failure_is_logged_and_its_text_kept_private(caplog: pytest.LogCaptureFixture) -> None:
    pair = SessionPair(methods=[echo])
    pair.client.send_request(echo, 1)
    pair.pump()
    with caplog.at_level(logging.ERROR, logger="session_core"):
        pair.server.send_outcome(1, exception=RuntimeError("db password is hunter2"))
    pair.pump()
    (error,) = pair.client_events
    assert isinstance(error, ErrorResponseReceived)
    assert error.code == -32603 and "hunter2" not in str(error.error)
    assert "hunter2" in caplog.text  # the server's own log has it, with the traceback


def test_handler_failure_text_exposed_on_opt_in() -> None:
    pair = SessionPair(methods=[echo], server_config=Config(expose_internal_errors=True))
    pair.client.send_request(echo, 1)
    pair.pump()
    logging.getLogger("session_core").disabled = True
    try:
        pair.server.send_outcome(1, exception=RuntimeError("details"))
    finally:
        logging.getLogger("session_core").disabled = False
    pair.pump()
    (error,) = pair.client_events
    assert isinstance(error, ErrorResponseReceived)
    assert error.message is not None and "details" in error.message


def test_answering_twice_is_a_local_error() -> None:
    pair = SessionPair()
    pair.client.send_request("x", 1)
    pair.pump()
    pair.server.send_response(1, 1)
    with pytest.raises(LocalProtocolError):
        pair.server.send_response(1, 2)
    with pytest.raises(LocalProtocolError):
        pair.server.send_error_response(77, "never asked")


def test_peer_cancel_answers_32800_and_drops_the_late_answer() -> None:
    pair = SessionPair()
    rid = pair.client.send_request("slow", None)
    pair.pump()
    assert pair.client.cancel_request(rid)
    assert not pair.client.cancel_request(rid)
    pair.pump()
    assert _of(pair.server_events, CancelRequested) == [CancelRequested(request_id=rid)]
    assert pair.server.requests_in_flight == 0
    pair.server.send_response(rid, "too late")  # dropped silently: the handler lost a race
    pair.pump()
    # The -32800 answer confirms the cancel to a client that expects it: nothing to report.
    assert pair.client_events == []
    # Any other answer to a given-up request is reported as late, never delivered.
    pair.client.receive_data(parse_free_frame(f'{{"type":"response","id":{rid},"result":1}}'), 0.0)
    assert pair.client.events() == [UnexpectedResponseReceived(request_id=rid, reason="unknown id")]


def test_reserved_method_names_cannot_be_served() -> None:
    pair = SessionPair()
    with pytest.raises(LocalProtocolError):
        pair.server.add_method(Method("$/cancel", request=Any, response=None, error=None))


def test_notification_with_data_that_does_not_fit_is_reported() -> None:
    pair = SessionPair(methods=[tick])
    pair.client.send_notification("tick", "seven")
    pair.pump()
    (event,) = pair.server_events
    assert isinstance(event, InvalidMessageReceived)
