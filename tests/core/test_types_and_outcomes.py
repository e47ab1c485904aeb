"""Typed conversion, outcomes as values or exceptions, URLs and the error hierarchy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import attrs
import pytest

from session_core import (
    EncodingError,
    ErrorResponseReceived,
    HandshakeRejected,
    InternalError,
    InvalidResponse,
    InvalidResponseReceived,
    LocalProtocolError,
    Method,
    MethodNotFound,
    ProtocolError,
    ProtocolErrorResponse,
    RemoteError,
    RemoteProtocolError,
    RequestAborted,
    RequestCancelled,
    RequestTimedOut,
    ResponseReceived,
    SessionClosed,
    SessionError,
    TooManyPendingRequests,
    _json,
)
from session_core._methods import describe_error
from session_core.driver import parse_url, result_of


@attrs.frozen
class Point:
    x: int
    y: float = attrs.field(validator=attrs.validators.ge(0))


@pytest.mark.parametrize(
    ("tp", "good", "bad"),
    [
        (int, [0, -5, 2**40], [True, 1.5, "1", None]),
        (float, [1, 2.5], [True, "2.5"]),
        (str, ["", "é"], [1, None, b"x"]),
        (bool, [True, False], [0, 1, "true"]),
        (None, [None], [0, ""]),
        (list[int], [[], [1, 2]], ["12", [1, "2"], {"a": 1}]),
        (Sequence[str], [["a"]], ["abc"]),
        (dict[str, int], [{}, {"a": 1}], [[("a", 1)], {"a": "1"}]),
        (Mapping[str, Any], [{"a": [None]}], [["a"]]),
        (list, [[1, "x"]], ["x"]),
        (Optional[int], [None, 3], ["3"]),  # noqa: UP045
        (int | str, [1, "a"], [None, 1.5]),
        (
            Point,
            [{"x": 1, "y": 2.0}, {"x": 1, "y": 2}],
            [{"x": 1}, {"x": "1", "y": 1}, {"x": 1, "y": -1}, [1, 2]],
        ),
        (list[Point], [[{"x": 1, "y": 0}]], [[{"x": 1, "y": "0"}]]),
    ],
    ids=repr,
)
def test_conversion_is_strict(tp: Any, good: list[Any], bad: list[Any]) -> None:
    method = Method("m", request=tp, response=None, error=None)
    for value in good:
        method.structure_request(value)
    for value in bad:
        with pytest.raises(Exception):  # noqa: B017 - cattrs raises several kinds
            method.structure_request(value)


@attrs.frozen
class Reading:
    value: float


def test_attrs_values_round_trip() -> None:
    method = Method("m", request=list[Point], response=Point, error=Any)
    assert method.unstructure_request([Point(1, 2.0)]) == [{"x": 1, "y": 2.0}]
    assert method.structure_response({"x": 3, "y": 4}) == Point(3, 4.0)
    # Any: the value goes to the codec as it is, which writes attrs instances itself.
    assert _json.dumps({"p": method.unstructure_error(Point(0, 0.5))}) == b'{"p":{"x":0,"y":0.5}}'
    with pytest.raises(EncodingError):
        _json.dumps([Reading(float("nan"))])  # NaN inside an attrs instance is caught too
    assert repr(method) == "Method('m', list[tests.core.test_types_and_outcomes.Point], Point, Any)"


def test_unsupported_types_are_refused_when_the_method_is_declared() -> None:
    with pytest.raises(LocalProtocolError):
        Method("m", request=complex, response=None, error=None)


def test_method_name_must_be_a_string() -> None:
    with pytest.raises(LocalProtocolError):
        Method(1, request=int, response=int, error=int)  # type: ignore[call-overload]


def test_describe_error_is_short_and_payload_free() -> None:
    method = Method("m", request=Point, response=None, error=None)
    with pytest.raises(Exception) as info:
        method.structure_request({"x": "secret-value", "y": 1})
    assert "secret-value" not in describe_error(info.value, Point)
    with pytest.raises(Exception) as info:
        method.structure_request({"x": 1, "y": -12345})  # the validator's message quotes it
    assert "12345" not in describe_error(info.value, Point)
    assert describe_error(ValueError("'purple' is not a valid Color"), int) == "expected int"
    assert describe_error(KeyError("x"), Point) == "required field missing"


def test_result_of_each_outcome() -> None:
    assert result_of(ResponseReceived(request_id=1, method="m", result=5)) == 5
    with pytest.raises(RemoteError) as error:
        result_of(ErrorResponseReceived(request_id=1, method="m", error="boom"))
    assert error.value.error == "boom" and error.value.method == "m"
    assert not isinstance(error.value, ProtocolErrorResponse)
    assert "boom" in str(error.value)
    cases: list[tuple[int, type[ProtocolErrorResponse]]] = [
        (-32601, MethodNotFound),
        (-32603, InternalError),
        (-32800, RequestCancelled),
        (-32000, ProtocolErrorResponse),
    ]
    for code, cls in cases:
        event = ErrorResponseReceived(request_id=2, method="m", error={}, code=code, message="why")
        with pytest.raises(cls) as protocol:
            result_of(event)
        assert type(protocol.value) is cls
        assert (protocol.value.code, protocol.value.message) == (code, "why")
        assert "why" in str(protocol.value)
    with pytest.raises(InvalidResponse):
        result_of(InvalidResponseReceived(request_id=1, method="m", reason="bad"))
    with pytest.raises(TimeoutError):
        result_of(RequestTimedOut(request_id=1, method="m"))
    with pytest.raises(SessionClosed) as closed:
        result_of(RequestAborted(request_id=1, method="m", code=1001, reason="going away"))
    assert (closed.value.code, closed.value.reason) == (1001, "going away")
    with pytest.raises(TypeError):
        result_of(ResponseReceived)  # type: ignore[arg-type]


def test_every_exception_is_a_session_error() -> None:
    rejected = HandshakeRejected(403, (), b"no")
    assert isinstance(rejected, SessionError) and rejected.status_code == 403
    assert "403" in str(rejected)
    assert str(SessionClosed(1000, "")) == "session closed (1000)"


@pytest.mark.parametrize(
    ("url", "secure", "host", "port", "target", "host_header"),
    [
        ("ws://127.0.0.1:9101", False, "127.0.0.1", 9101, "/", "127.0.0.1:9101"),
        ("wss://example.com/a/b?c=d", True, "example.com", 443, "/a/b?c=d", "example.com:443"),
        ("ws://[::1]:80/x", False, "::1", 80, "/x", "[::1]:80"),
    ],
)
def test_parse_url(url: str, secure: bool, host: str, port: int, target: str, host_header: str) -> None:
    parsed = parse_url(url)
    assert (parsed.secure, parsed.host, parsed.port, parsed.target) == (secure, host, port, target)
    assert parsed.host_header == host_header


@pytest.mark.parametrize("url", ["http://x/", "ws://", "ws://u:p@x/", "ws://x:99999/", "x"])
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_url(url)


def test_error_names_mean_what_they_mean_in_h11_and_wsproto() -> None:
    # A protocol violation, by us or by the peer, is a `ProtocolError`.
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(InvalidResponse, RemoteProtocolError)
    # The peer answering with a protocol error object is an answer, not a violation.
    assert issubclass(ProtocolErrorResponse, RemoteError)
    assert not issubclass(ProtocolErrorResponse, ProtocolError)
    # Back-pressure is not a misuse.
    assert not issubclass(TooManyPendingRequests, ProtocolError)
    assert issubclass(TooManyPendingRequests, SessionError)
    error = ProtocolErrorResponse.from_code(-32601, "method not found: x", method="x", request_id=3)
    assert type(error) is MethodNotFound and (error.code, error.request_id) == (-32601, 3)
    assert type(ProtocolErrorResponse.from_code(-32000, "server")) is ProtocolErrorResponse
