"""The JSON codec refuses a non-finite float wherever it is, whatever the value's shape: the
check takes a different way for short and long texts, few and many objects (`_json`'s
module documentation), and every way must find it."""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import EncodingError, _json

BAD = (math.nan, math.inf, -math.inf)


@attrs.frozen
class Reading:
    value: Any


@dataclasses.dataclass
class Sample:
    value: Any


class Level(enum.Enum):
    LOW = 1.5
    BROKEN = (1.0, math.inf)


def _oracle(value: Any) -> bool:
    """Whether `value` holds a non-finite float: the plain recursive definition."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_oracle(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_oracle(v) for v in value)
    if isinstance(value, enum.Enum):
        return _oracle(value.value)
    if attrs.has(type(value)):
        return _oracle(attrs.asdict(value, recurse=False))
    if dataclasses.is_dataclass(value):
        return _oracle([getattr(value, f.name) for f in dataclasses.fields(value)])
    return False


def _refused(value: Any) -> bool:
    try:
        text = _json.dumps(value)
    except EncodingError:
        return True
    assert orjson.loads(text) is not None or text == b"null"
    return False


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(["x" * 5000, "null" * 1500]),  # long texts, with and without "null"
)
bad_floats = st.sampled_from(BAD)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=40),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=3), children, max_size=20),
        children.map(Reading),
        children.map(Sample),
        st.lists(
            st.one_of(st.none(), st.integers(0, 9), st.floats(allow_nan=False)), min_size=16, max_size=200
        ),
        st.lists(st.integers(0, 9) | st.floats(-10, 10), min_size=16, max_size=200),
    )


values = st.recursive(
    scalars | bad_floats | st.just(Level.LOW) | st.just(Level.BROKEN), _containers, max_leaves=60
)


@given(values)
@settings(max_examples=500, deadline=None)
def test_refused_exactly_when_a_non_finite_float_is_inside(value: Any) -> None:
    assert _refused(value) == _oracle(value)


@pytest.mark.parametrize("bad", BAD)
def test_every_shape_is_checked(bad: float) -> None:
    big = "x" * (1 << 20)
    records = [{"id": i, "name": "n", "extra": None} for i in range(20_000)]
    shapes = [
        [big, bad],  # few objects, long text: the walk within its budget
        {"a": big, "b": {"c": [1, 2, bad]}},
        [None, 1, "a", 2.5] * 5000 + [bad],  # many plain items: checked in bulk
        [*[2.5, 1] * 10_000, bad],  # numbers only: summed
        [*records, {"id": -1, "value": bad}],  # many small containers: the search, then the walk
        [[big], *[None] * 20_000, [[bad]]],
        Sample([big, Reading(bad)]),
        [bad],
        bad,
    ]
    for shape in shapes:
        with pytest.raises(EncodingError, match="NaN and Infinity"):
            _json.dumps(shape)


def test_finite_values_of_every_shape_pass() -> None:
    big = "x" * (1 << 20)
    shapes: list[Any] = [
        big,
        [big, None],
        [None, 1, "a", 2.5] * 5000,
        [1e308] * 20,  # finite, though their sum overflows
        [{"id": i, "name": "n", "extra": None} for i in range(20_000)],
        ["null"] * 10_000,
        Sample([big, Reading(None)]),
        Level.LOW,
    ]
    for shape in shapes:
        assert orjson.loads(_json.dumps(shape)) == orjson.loads(orjson.dumps(shape, default=_json._default))


def test_enum_and_dataclass_values_are_checked() -> None:
    # orjson writes these itself, and would write a non-finite float inside as null.
    with pytest.raises(EncodingError):
        _json.dumps(Sample(math.nan))
    with pytest.raises(EncodingError):
        _json.dumps({"level": Level.BROKEN})
    assert _json.dumps(Sample(1.5)) == b'{"value":1.5}'


def test_the_walk_stops_at_its_budget() -> None:
    many = [None] * 10_000
    assert _json._has_non_finite(many, 10) is None
    assert _json._has_non_finite([many], 2) is None
    assert _json._has_non_finite(many) is False
    assert _json._has_non_finite(["x", math.inf], 10) is True
