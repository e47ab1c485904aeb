"""The envelope's wire form: round trips, and refusal of anything else with one exception."""

from __future__ import annotations

import contextlib
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from session_core import EncodingError
from session_hub import VERSION, Envelope, InvalidEnvelope, Kind, Outcome, decode, encode
from session_hub._envelope import OVERHEAD, body_of, decode_all, encode_batch

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
    if kind is Kind.CANCEL:
        fields["request_id"] = draw(st.integers(1, 2**62))
    if kind is Kind.UNDELIVERED:
        fields["target"] = draw(names)
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


@given(st.lists(envelopes(), min_size=1, max_size=6), names, st.integers(1, 2**62))
def test_batch_round_trip_numbers_its_envelopes_in_order(
    batch: list[Envelope], source: str, seq: int
) -> None:
    wire = encode_batch(source, seq, [body_of(e) for e in batch])
    expected = [attrs.evolve(e, source=source, seq=seq + i) for i, e in enumerate(batch)]
    assert decode_all(wire) == expected
    assert len(wire) <= sum(len(body_of(e)) + 1 for e in batch) + OVERHEAD + len(source.encode()) * 6
    with pytest.raises(InvalidEnvelope, match="batch"):
        decode(wire)  # one envelope was asked for


@given(envelopes())
def test_a_whole_envelope_is_a_list_of_one(envelope: Envelope) -> None:
    assert decode_all(encode(envelope)) == [envelope]


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
        ({"v": 1, "k": "canary", "src": "a", "seq": 1}, "version"),
        ({"v": True, "k": "canary", "src": "a", "seq": 1}, "version"),
        ({"v": 2, "k": "shout", "src": "a", "seq": 1}, "kind"),
        ({"v": 2, "k": "canary", "src": "a", "seq": 0}, "sequence"),
        ({"v": 2, "k": "canary", "src": "a", "seq": True}, "seq"),
        ({"v": 2, "k": "notification", "src": "a", "seq": 1, "m": "x"}, "target"),
        ({"v": 2, "k": "request", "src": "a", "seq": 1, "to": "b.1", "m": "x", "id": 1}, "reply_to"),
        ({"v": 2, "k": "reply", "src": "a", "seq": 1, "id": 1}, "outcome"),
        ({"v": 2, "k": "reply", "src": "a", "seq": 1, "id": 1, "o": "maybe"}, "outcome"),
        (
            {
                "v": 2,
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
        ({"v": 2, "k": "broadcast", "src": "a", "seq": 1, "to": "g", "m": "x", "x": [1]}, "'x'"),
        ({"v": 2, "k": "cancel", "src": "a", "seq": 1}, "cancel without id"),
        ({"v": 2, "k": "undelivered", "src": "a", "seq": 1}, "undelivered without target"),
        ({"v": 2, "k": "batch", "src": "a", "seq": 1, "e": []}, "empty batch"),
        ({"v": 2, "k": "batch", "src": "a", "seq": 1, "e": [1]}, "envelope objects"),
        ({"v": 2, "k": "batch", "src": "a", "seq": 1, "e": [{"k": "batch"}]}, "envelope objects"),
        (
            {"v": 2, "k": "batch", "src": "a", "seq": 1, "e": [{"k": "canary"}, {"k": "cancel"}]},
            "cancel without id",
        ),
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
