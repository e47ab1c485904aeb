"""The opening handshake, both roles, through wsproto/h11."""

from __future__ import annotations

import pytest

from session_core import (
    Config,
    Connection,
    ConnectionClosed,
    HandshakeAccepted,
    LocalProtocolError,
    Reject,
    State,
    UpgradeRejected,
    UpgradeRequested,
)
from tests.helpers import SESSION_RS_UPGRADE, TEXT, SessionPair, byte_by_byte, client_frame


def test_client_and_server_agree_on_subprotocol_and_headers() -> None:
    pair = SessionPair(accept=False)
    pair.client = Connection.client(
        "example.test:80",
        "/chat?room=1",
        now=0.0,
        headers=[("Origin", "https://a.test")],
        subprotocols=["v2", "v1"],
    )
    pair.pump()
    (upgrade,) = pair.server_events
    assert isinstance(upgrade, UpgradeRequested)
    assert upgrade.path == "/chat?room=1"
    assert upgrade.host == "example.test:80"
    assert upgrade.subprotocols == ("v2", "v1")
    assert (b"origin", b"https://a.test") in upgrade.headers
    pair.server.accept(now=0.0, subprotocol="v1", headers=[("X-Server", "1")])
    pair.pump()
    (accepted,) = pair.client_events
    assert accepted == HandshakeAccepted(subprotocol="v1", headers=((b"x-server", b"1"),))
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN
    assert pair.client.subprotocol == pair.server.subprotocol == "v1"


def test_accepting_a_subprotocol_not_offered_is_a_local_error() -> None:
    pair = SessionPair(accept=False)
    pair.pump()
    with pytest.raises(LocalProtocolError):
        pair.server.accept(now=0.0, subprotocol="nope")


def test_rejection_reaches_the_client_with_status_headers_and_body() -> None:
    pair = SessionPair(accept=False)
    pair.pump()
    pair.server.decide(
        Reject(status_code=401, body=b"who are you?", headers=(("WWW-Authenticate", "Basic"),)), now=0
    )
    assert pair.server.should_close_transport
    pair.pump()
    rejected, closed = pair.client_events
    assert isinstance(rejected, UpgradeRejected)
    assert rejected.status_code == 401
    assert rejected.body == b"who are you?"
    assert (b"www-authenticate", b"Basic") in rejected.headers
    assert isinstance(closed, ConnectionClosed)
    assert pair.client.state is State.CLOSED


def test_rejection_body_ending_with_the_stream() -> None:
    client = Connection.client("h:1", "/", now=0.0)
    client.data_to_send()
    client.receive_data(b"HTTP/1.1 503 Service Unavailable\r\n\r\nbusy", 0.0)
    assert client.events() == []
    client.receive_eof()
    rejected, closed = client.events()
    assert rejected == UpgradeRejected(status_code=503, headers=(), body=b"busy")
    assert isinstance(closed, ConnectionClosed)


def test_plain_get_is_answered_ok_like_session_rs() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    (closed,) = server.events()
    assert isinstance(closed, ConnectionClosed)
    response = server.data_to_send()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"\r\n\r\nOK")
    assert server.should_close_transport


def test_wrong_websocket_version_gets_426() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(SESSION_RS_UPGRADE.replace(b"Version: 13", b"Version: 8"), 0.0)
    assert isinstance(server.events()[-1], ConnectionClosed)
    assert server.data_to_send().startswith(b"HTTP/1.1 426 ")


def test_garbage_instead_of_http_closes_without_raising() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(b"\x00\x01garbage\r\n\r\n", 0.0)
    assert isinstance(server.events()[-1], ConnectionClosed)
    assert server.should_close_transport


def test_client_refuses_a_bad_accept_token() -> None:
    client = Connection.client("h:1", "/", now=0.0)
    client.data_to_send()
    client.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: bogus\r\n\r\n",
        0.0,
    )
    (closed,) = client.events()
    assert isinstance(closed, ConnectionClosed)
    assert "invalid handshake response" in closed.reason


def test_handshake_byte_by_byte() -> None:
    pair = SessionPair(chunker=byte_by_byte)
    assert pair.client.state is State.OPEN and pair.server.state is State.OPEN


def test_messages_sent_before_accept_are_held_until_accept() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    server.events()
    server.receive_data(client_frame(TEXT, b'{"type":"notification","method":"early","data":1}'), 0.0)
    assert server.events() == []
    server.accept(now=0.0)
    assert [type(e).__name__ for e in server.events()] == ["NotificationReceived"]


def test_handshake_timeout_drops_a_silent_client() -> None:
    server = Connection.server(now=100.0, config=Config(handshake_timeout=5.0))
    server.receive_data(b"GET / HTTP/1.1\r\n", 100.0)  # slowloris: never finishes
    assert server.get_timer() == 105.0
    server.handle_timer(104.9)
    assert server.events() == []
    server.handle_timer(105.0)
    assert server.events() == [ConnectionClosed(code=1006, reason="handshake timed out")]
    assert server.should_close_transport
    assert server.get_timer() is None


def test_handshake_timeout_covers_an_undecided_upgrade() -> None:
    server = Connection.server(now=0.0, config=Config(handshake_timeout=1.0))
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    server.events()
    server.handle_timer(1.0)
    assert isinstance(server.events()[-1], ConnectionClosed)
    with pytest.raises(LocalProtocolError):
        server.accept(now=1.0)


def test_sending_before_the_handshake_is_a_local_error() -> None:
    client = Connection.client("h:1", "/", now=0.0)
    with pytest.raises(LocalProtocolError):
        client.send_request("x", 1)
    with pytest.raises(LocalProtocolError):
        client.send_notification("x", 1)


def test_reject_needs_an_error_status() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    with pytest.raises(LocalProtocolError):
        server.reject(200)


def test_eof_during_handshake_ends_the_connection() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(b"GET / HTTP/1.1\r\n", 0.0)
    server.receive_eof()
    assert server.events() == [ConnectionClosed(code=1006, reason="connection lost")]


@pytest.mark.parametrize(
    ("name", "value"),
    [("Bad Name", "x"), ("X-Ok", "line\r\nbreak"), ("", "x")],
    ids=["space", "crlf", "empty"],
)
def test_invalid_client_headers_raise_our_own_error(name: str, value: str) -> None:
    with pytest.raises(LocalProtocolError):
        Connection.client("h:1", "/", now=0.0, headers=[(name, value)])


def test_rejection_carries_a_content_length() -> None:
    server = Connection.server(now=0.0)
    server.receive_data(SESSION_RS_UPGRADE, 0.0)
    server.reject(403, b"forbidden")
    response = server.data_to_send()
    assert b"\r\ncontent-length: 9\r\n" in response.lower()
    assert b"chunked" not in response.lower()
    assert response.endswith(b"\r\n\r\nforbidden")
