"""The envelope's wire form: round trips, and refusal of anything else with one exception."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from session_core import EncodingError
from session_hub import VERSION, Envelope, InvalidEnvelope, Kind, Outcome, decode, encode

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
names = st.text(min_size=1, max_size=20)


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    kind = draw(st.sampled_from(Kind))
    fields: dict[str, Any] = {"kind": kind, "source": draw(names), "seq": draw(st.integers(1, 2**62))}
    if kind in (Kind.NOTIFICATION, Kind.BROADCAST, Kind.REQUEST):
        fields["target"] = draw(names)
        fields["method"] = draw(names)
        fields["data"] = draw(json_values)
    if kind is Kind.BROADCAST:
        fields["exclude"] = tuple(draw(st.lists(names, max_size=3)))
    if kind is Kind.REQUEST:
        fields["request_id"] = draw(st.integers(1, 2**62))
        fields["reply_to"] = draw(names)
        fields["timeout"] = draw(st.none() | st.floats(0, 1e6))
    if kind is Kind.REPLY:
        fields["request_id"] = draw(st.integers(1, 2**62))
        fields["outcome"] = draw(st.sampled_from(Outcome))
        fields["data"] = draw(json_values)
        fields["code"] = draw(st.integers(-40000, 5000))
        fields["message"] = draw(st.text(max_size=20))
    return Envelope(**fields)


@given(envelopes())
def test_round_trip(envelope: Envelope) -> None:
    assert decode(encode(envelope)) == envelope


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_decoded_or_refused_with_invalid_envelope(data: bytes) -> None:
    with contextlib.suppress(InvalidEnvelope):
        decode(data)


@given(
    st.dictionaries(
        st.sampled_from(["v", "k", "src", "seq", "to", "m", "d", "id", "rt", "t", "x", "o", "c", "msg"]),
        json_values,
    )
)
def test_arbitrary_objects_are_decoded_or_refused_with_invalid_envelope(obj: dict[str, Any]) -> None:
    try:
        envelope = decode(orjson.dumps(obj))
    except InvalidEnvelope:
        return
    assert envelope.seq >= 1 and envelope.source


def test_wire_form_is_short_keyed_and_versioned() -> None:
    wire = encode(
        Envelope(kind=Kind.NOTIFICATION, source="n1", seq=3, target="n2.7", method="chat", data="hi")
    )
    assert orjson.loads(wire) == {
        "v": VERSION,
        "k": "notification",
        "src": "n1",
        "seq": 3,
        "to": "n2.7",
        "m": "chat",
        "d": "hi",
    }


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ({"v": 2, "k": "canary", "src": "a", "seq": 1}, "version"),
        ({"v": True, "k": "canary", "src": "a", "seq": 1}, "version"),
        ({"v": 1, "k": "shout", "src": "a", "seq": 1}, "kind"),
        ({"v": 1, "k": "canary", "src": "a", "seq": 0}, "sequence"),
        ({"v": 1, "k": "canary", "src": "a", "seq": True}, "seq"),
        ({"v": 1, "k": "notification", "src": "a", "seq": 1, "m": "x"}, "target"),
        ({"v": 1, "k": "request", "src": "a", "seq": 1, "to": "b.1", "m": "x", "id": 1}, "reply_to"),
        ({"v": 1, "k": "reply", "src": "a", "seq": 1, "id": 1}, "outcome"),
        ({"v": 1, "k": "reply", "src": "a", "seq": 1, "id": 1, "o": "maybe"}, "outcome"),
        (
            {
                "v": 1,
                "k": "request",
                "src": "a",
                "seq": 1,
                "to": "b.1",
                "m": "x",
                "id": 1,
                "rt": "a",
                "t": -1,
            },
            "'t'",
        ),
        ({"v": 1, "k": "broadcast", "src": "a", "seq": 1, "to": "g", "m": "x", "x": [1]}, "'x'"),
    ],
)
def test_refusals_say_why(obj: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidEnvelope, match=why):
        decode(orjson.dumps(obj))


@pytest.mark.parametrize("data", [b"", b"[]", b"{", b"\xff", b'"text"'])
def test_not_an_object(data: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        decode(data)


def test_unencodable_data_raises_encoding_error() -> None:
    with pytest.raises(EncodingError):
        encode(
            Envelope(kind=Kind.NOTIFICATION, source="a", seq=1, target="b.1", method="m", data=float("nan"))
        )
