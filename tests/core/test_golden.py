"""Golden wire tests: session-rs's messages parse, and what we send is byte-identical."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from session_core import (
    Connection,
    ConnectionClosed,
    ErrorResponseReceived,
    HandshakeAccepted,
    InvalidMessageReceived,
    NotificationReceived,
    RequestReceived,
    ResponseReceived,
    UpgradeRequested,
)
from tests.helpers import (
    CLOSE,
    SESSION_RS_ACCEPT,
    SESSION_RS_UPGRADE,
    TEXT,
    accept_for,
    client_frame,
    frame,
    open_client,
    open_server,
    parse_frames,
)

VECTORS = Path(__file__).parent / "vectors"


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (VECTORS / name).read_text().splitlines() if line.strip()]


RECEIVED = _lines("messages.jsonl")
SENT = _lines("sent.jsonl")


@pytest.mark.parametrize("vector", RECEIVED, ids=lambda v: v["text"][:50])
def test_received_message(vector: dict[str, Any]) -> None:
    """Each received vector gives its kind and fields, or an invalid-message event."""
    client = open_client()
    expect = vector["expect"]
    kind = expect["kind"]
    if kind in ("response", "errorresponse"):
        # An answer must match a pending request: send as many as the vector's id needs.
        while client.send_request("probe", None) < expect["id"]:
            pass
        client.data_to_send()
    client.receive_data(frame(TEXT, vector["text"].encode()), 0.0)
    events = client.events()
    assert len(events) == 1, events
    event = events[0]
    if kind == "invalid":
        assert isinstance(event, InvalidMessageReceived)
    elif kind == "request":
        assert event == RequestReceived(request_id=expect["id"], method=expect["method"], data=expect["data"])
    elif kind == "notification":
        assert event == NotificationReceived(method=expect["method"], data=expect["data"])
    elif kind == "response":
        assert event == ResponseReceived(request_id=expect["id"], method="probe", result=expect["result"])
    else:
        assert event == ErrorResponseReceived(request_id=expect["id"], method="probe", error=expect["error"])
    # The session goes on whatever arrived.
    client.send_notification("still", "open")
    assert client.data_to_send()


def _send(conn: Connection, message: dict[str, Any]) -> None:
    kind = message["kind"]
    if kind == "request":
        while conn.send_request(message["method"], message["data"]) < message["id"]:
            pass
    elif kind == "notification":
        conn.send_notification(message["method"], message["data"])
    else:
        # The server can only answer requests it received: receive the id first.
        request = json.dumps({"type": "request", "id": message["id"], "method": "m", "data": None})
        conn.receive_data(client_frame(TEXT, request.encode()), 0.0)
        conn.events()
        if kind == "response":
            conn.send_response(message["id"], message["result"])
        else:
            conn.send_error_response(message["id"], message["error"])


@pytest.mark.parametrize("vector", SENT, ids=lambda v: v["text"][:50])
def test_sent_message_is_byte_identical(vector: dict[str, Any]) -> None:
    """What we send is exactly session-rs's text, in one unfragmented text frame."""
    message = vector["message"]
    if message["kind"] in ("request", "notification"):
        conn = open_client()
    else:
        conn = open_server()
    _send(conn, message)
    frames = parse_frames(conn.data_to_send())
    assert frames[-1] == (TEXT, True, vector["text"].encode())


def test_captured_session_rs_exchange_at_our_server() -> None:
    """Replay the captured session-rs client against our server, byte for byte."""
    server = Connection.server(now=0.0)
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    assert isinstance(server.next_event(), UpgradeRequested)
    server.accept(now=0.0)
    assert server.data_to_send() == SESSION_RS_ACCEPT
    server.send_notification("welcome", "hi")
    assert server.data_to_send() == frame(TEXT, b'{"type":"notification","method":"welcome","data":"hi"}')
    answers = {"echo": lambda d: d, "add": lambda d: d["a"] + d["b"]}
    requests = [
        (
            b'{"type":"request","id":1,"method":"echo","data":{"x":[1,2,3]}}',
            b'{"type":"response","id":1,"result":{"x":[1,2,3]}}',
        ),
        (
            b'{"type":"request","id":2,"method":"add","data":{"a":2,"b":3}}',
            b'{"type":"response","id":2,"result":5}',
        ),
        (
            b'{"type":"request","id":3,"method":"fail","data":null}',
            b'{"type":"errorresponse","id":3,"error":"boom"}',
        ),
    ]
    for sent, answer in requests:
        server.receive_data(client_frame(TEXT, sent), 0.0)
        (event,) = server.events()
        assert isinstance(event, RequestReceived)
        if event.method == "fail":
            server.send_error_response(event.request_id, "boom")
        else:
            server.send_response(event.request_id, answers[event.method](event.data))
        assert server.data_to_send() == frame(TEXT, answer)
    # session-rs closes with an empty close frame: a normal end (1005), answered in kind.
    server.receive_data(client_frame(CLOSE), 0.0)
    assert server.events() == [ConnectionClosed(code=1005, reason="")]
    assert server.data_to_send() == frame(CLOSE)
    assert server.should_close_transport


def test_captured_session_rs_exchange_at_our_client() -> None:
    """Replay the captured session-rs server against our client."""
    client = Connection.client("127.0.0.1:9101", "/", now=0.0)
    request = client.data_to_send()
    assert request.startswith(b"GET / HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:9101\r\n" in request.lower()
    key = next(
        line.split(b": ")[1]
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    # The 101 and the first frame may arrive in one read: nothing may be lost.
    client.receive_data(
        accept_for(key) + frame(TEXT, b'{"type":"notification","method":"welcome","data":"hi"}'), 0.0
    )
    events = client.events()
    assert isinstance(events[0], HandshakeAccepted)
    assert events[1] == NotificationReceived(method="welcome", data="hi")
    assert client.send_request("echo", {"x": [1, 2, 3]}) == 1
    assert parse_frames(client.data_to_send()) == [
        (TEXT, True, b'{"type":"request","id":1,"method":"echo","data":{"x":[1,2,3]}}')
    ]
    client.receive_data(frame(TEXT, b'{"type":"response","id":1,"result":{"x":[1,2,3]}}'), 0.0)
    assert client.events() == [ResponseReceived(request_id=1, method="echo", result={"x": [1, 2, 3]})]
