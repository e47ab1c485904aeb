"""The role classes (`ClientConnection`, `ServerConnection`), the catch-all for requests to
methods never added, and converters of one's own (`make_converter`)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

import session_core
from session_core import (
    Accept,
    ClientConnection,
    Connection,
    ErrorResponseReceived,
    HandshakeAccepted,
    LocalProtocolError,
    Method,
    NotificationReceived,
    Reject,
    RequestReceived,
    RequestRejected,
    ResponseReceived,
    ServerConnection,
    State,
    UpgradeRequested,
    make_converter,
)
from tests.helpers import SessionPair


@attrs.frozen
class AddArgs:
    a: int
    b: int


add = Method("add", request=AddArgs, response=int, error=str)


def _of(events: list[Any], kind: Any) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# -- roles ---------------------------------------------------------------------------------


def test_the_role_classes_open_a_session_and_only_a_server_decides() -> None:
    client = ClientConnection("example.test:80", "/chat", now=0.0, subprotocols=["v1"])
    server = ServerConnection(now=0.0, methods=[add])
    assert isinstance(client, Connection) and isinstance(server, Connection)
    for name in ("accept", "reject", "decide"):
        assert not hasattr(client, name), name
        assert hasattr(server, name), name
    server.receive_data(client.data_to_send(), 0.0)
    [upgrade] = server.events()
    assert isinstance(upgrade, UpgradeRequested)
    assert (upgrade.path, upgrade.subprotocols) == ("/chat", ("v1",))
    server.accept(now=0.0, subprotocol="v1")
    client.receive_data(server.data_to_send(), 0.0)
    assert client.events() == [HandshakeAccepted(subprotocol="v1", headers=())]
    request_id = client.send_request(add, AddArgs(2, 3))
    server.receive_data(client.data_to_send(), 0.0)
    [request] = server.events()
    assert request == RequestReceived(request_id=request_id, method="add", data=AddArgs(2, 3))
    assert "ServerConnection server open" in repr(server)


def test_the_old_constructors_are_aliases_of_the_role_classes() -> None:
    client = Connection.client("example.test:80", now=0.0)
    server = Connection.server(now=0.0)
    assert type(client) is ClientConnection
    assert type(server) is ServerConnection
    assert client.path == "/" and client.host == "example.test:80"


# -- the catch-all -------------------------------------------------------------------------


def test_without_a_catch_all_an_unknown_method_is_answered_by_the_core() -> None:
    pair = SessionPair(methods=[add])
    request_id = pair.client.send_request("other", [1])
    pair.pump()
    assert [e.request_id for e in _of(pair.server_events, RequestRejected)] == [request_id]
    assert not _of(pair.server_events, RequestReceived)


def test_a_catch_all_delivers_unknown_methods_raw_and_sends_their_answers_raw() -> None:
    pair = SessionPair(methods=[add])
    pair.server.add_catch_all()
    typed = pair.client.send_request(add, AddArgs(1, 2))
    other = pair.client.send_request("other", {"x": [1, 2]})
    failing = pair.client.send_request("failing", None)
    pair.client.send_notification("note", {"n": 1})
    pair.pump()
    assert not _of(pair.server_events, RequestRejected)
    received = {e.request_id: e for e in _of(pair.server_events, RequestReceived)}
    assert received[typed].data == AddArgs(1, 2)  # a method that was added stays typed
    assert received[other] == RequestReceived(request_id=other, method="other", data={"x": [1, 2]})
    assert received[failing].data is None
    assert _of(pair.server_events, NotificationReceived) == [
        NotificationReceived(method="note", data={"n": 1})
    ]
    # Raw answers: no type of `add` applies to them (a dict is not an int).
    pair.server.send_response(other, {"sum": 3})
    pair.server.send_error_response(failing, {"why": "no"})
    pair.server.send_response(typed, 3)
    pair.pump()
    answers = {e.request_id: e for e in _of(pair.client_events, ResponseReceived | ErrorResponseReceived)}
    assert answers[other] == ResponseReceived(request_id=other, method="other", result={"sum": 3})
    assert answers[failing] == ErrorResponseReceived(
        request_id=failing, method="failing", error={"why": "no"}
    )
    assert answers[typed] == ResponseReceived(request_id=typed, method="add", result=3)
    assert pair.server.requests_in_flight == 0


def test_a_catch_all_outlives_making_an_untyped_connection_typed() -> None:
    pair = SessionPair()
    pair.server.add_catch_all()
    pair.server.add_method(add)
    request_id = pair.client.send_request("other", 7)
    pair.pump()
    assert _of(pair.server_events, RequestReceived) == [
        RequestReceived(request_id=request_id, method="other", data=7)
    ]


# -- converters ----------------------------------------------------------------------------


class Celsius:
    """A type cattrs knows nothing of: it needs hooks."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Celsius) and other.degrees == self.degrees

    __hash__ = None  # type: ignore[assignment]


def _celsius_converter() -> Any:
    converter = make_converter()
    converter.register_structure_hook(Celsius, lambda value, _: Celsius(float(value)))
    converter.register_unstructure_hook(Celsius, lambda value: value.degrees)
    return converter


def test_there_is_no_global_converter_to_register_hooks_on() -> None:
    assert not hasattr(session_core, "converter")
    assert make_converter() is not make_converter()
    with pytest.raises(LocalProtocolError, match="unsupported type"):
        Method("temperature", request=Celsius, response=None, error=None)


def test_a_method_built_with_a_users_converter_uses_its_hooks() -> None:
    converter = _celsius_converter()
    warm = Method("warm", request=Celsius, response=Celsius, error=None, converter=converter)
    raw = SessionPair()  # an untyped server shows what went on the wire
    raw.client.send_request(warm, Celsius(21.5))
    raw.pump()
    assert [e.data for e in _of(raw.server_events, RequestReceived)] == [21.5]
    pair = SessionPair(methods=[warm])
    request_id = pair.client.send_request(warm, Celsius(21.5))
    pair.pump()
    assert pair.server_events == [RequestReceived(request_id=request_id, method="warm", data=Celsius(21.5))]
    pair.server.send_response(request_id, Celsius(22.0))
    pair.pump()
    assert pair.client_events == [
        ResponseReceived(request_id=request_id, method="warm", result=Celsius(22.0))
    ]


def test_a_users_converter_is_as_strict_as_the_default() -> None:
    converter = _celsius_converter()
    strict = Method("strict", request=list[int], response=bool, error=None, converter=converter)
    with pytest.raises(TypeError):
        strict.structure_request("123")  # a string is not a list of int
    with pytest.raises(Exception, match="expected int"):
        strict.structure_request(["1"])
    with pytest.raises(TypeError):
        strict.structure_response(1)  # 1 is not a bool
    assert strict.structure_request([1, 2]) == [1, 2]


def _upgraded_server() -> ServerConnection:
    client = ClientConnection("example.test:80", now=0.0, subprotocols=["v1"])
    server = ServerConnection(now=0.0)
    server.receive_data(client.data_to_send(), 0.0)
    assert [type(e) for e in server.events()] == [UpgradeRequested]
    return server


@pytest.mark.parametrize("decision", ["yes", Accept(subprotocol="v2")])
def test_a_decision_that_cannot_be_applied_is_answered_500(
    decision: object, caplog: pytest.LogCaptureFixture
) -> None:
    server = _upgraded_server()
    server.decide(decision, now=0.0)
    assert server.data_to_send().startswith(b"HTTP/1.1 500 ")
    assert server.state is State.CLOSED
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_a_decision_after_the_end_is_ignored_and_deciding_twice_raises() -> None:
    server = _upgraded_server()
    server.handle_timer(100.0)  # the handshake timed out while the hook thought
    server.decide(Reject(status_code=401), now=100.0)
    assert server.data_to_send() == b""
    server = _upgraded_server()
    server.decide(None, now=0.0)
    assert server.state is State.OPEN
    with pytest.raises(LocalProtocolError):
        server.decide(None, now=0.0)
