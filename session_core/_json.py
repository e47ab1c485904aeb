"""The JSON codec: orjson, made strict where orjson is lenient.

orjson already refuses `NaN`/`Infinity` and lone surrogates on input, refuses lone
surrogates on output, and limits nesting depth instead of recursing without bound. The one
leniency left is output: it writes a non-finite float as `null`.

So every encoding is checked for non-finite floats, in the cheaper of two ways:

- Searching the text for `null`: a value whose encoding holds no `null` holds no
  non-finite float. This costs about half a nanosecond a byte, which is nothing next to a
  small message and more than orjson itself on a long string (a 1 MiB string: ten times).
- Walking the value: a few objects cost nothing whatever the text's size, and a sequence
  of plain values is checked at C speed (the set of its item types); only many small
  containers (a long list of records) make it slow.

A short text is searched, and walked only when `null` is in it. A long one is walked first
with a budget of objects proportional to its size (so that the walk never costs much more
than the search would); past the budget, the text is searched, and the walk finishes only
if `null` is in it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Final

import attrs
import orjson

from ._errors import EncodingError
from ._methods import _DEFAULT_CONVERTER as converter

JSONDecodeError = orjson.JSONDecodeError
loads = orjson.loads

#: Texts shorter than this are searched for `null` (a few hundred nanoseconds at most).
SEARCH_BELOW: Final = 4096
#: A walk before the search may visit one object for this many bytes of text.
_BYTES_PER_VISIT: Final = 256
#: Sequences (and dict values) at least this long are checked in bulk, by item types.
_BULK_FROM: Final = 16
#: Types that hold no float and that orjson writes as they are.
_PLAIN: Final = frozenset({str, int, bool, type(None)})
#: Types a sequence of numbers may have, summed at C speed.
_NUMBERS: Final = frozenset({float, int})
_NUMBERS_AND_PLAIN: Final = _NUMBERS | _PLAIN
_UNLIMITED: Final = 1 << 62


def dumps(value: Any) -> bytes:
    """Encode `value` as compact JSON, refusing what JSON cannot hold.

    Raises:
        EncodingError: `value` holds a non-finite float, a lone surrogate, an integer
            outside 64 bits, a non-string key or an object JSON cannot represent.
    """
    try:
        text = orjson.dumps(value, default=_default)
    except TypeError as exc:
        raise EncodingError(f"value cannot be sent as JSON: {exc}") from None
    if len(text) < SEARCH_BELOW:
        found = b"null" in text and _has_non_finite(value)
    else:
        found = _has_non_finite(value, len(text) // _BYTES_PER_VISIT)
        if found is None:  # over the budget: many small objects, the search is cheap then
            found = b"null" in text and _has_non_finite(value)
    if found:
        raise EncodingError("value cannot be sent as JSON: NaN and Infinity are not JSON")
    return text


def _default(value: Any) -> Any:
    # What orjson cannot write itself: attrs instances inside a value typed `Any`, which
    # is then passed to orjson untouched instead of being copied by cattrs first.
    if attrs.has(type(value)):
        return converter.unstructure(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _has_non_finite(value: Any, budget: int | None = None) -> bool | None:
    """Whether `value` holds a float that is not finite, anywhere orjson would write it;
    `None` if telling would take more than `budget` visits (an object each, or four
    items of a sequence checked in bulk)."""
    left = _UNLIMITED if budget is None else budget
    stack = [value]
    while stack:
        left -= 1
        if left < 0:
            return None
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return True
            continue
        if kind in _PLAIN:
            continue
        if kind is dict:
            items: Any = item.values()
        elif kind is list or kind is tuple:
            items = item
        elif isinstance(item, float):  # not written by orjson, but an enum's value may be one
            if not math.isfinite(item):
                return True
            continue
        elif isinstance(item, dict):
            items = item.values()
        elif isinstance(item, (list, tuple)):
            items = item
        elif isinstance(item, enum.Enum):
            stack.append(item.value)  # orjson writes an enum member as its value
            continue
        elif attrs.has(kind):
            stack.append(converter.unstructure(item))
            continue
        elif dataclasses.is_dataclass(item):  # orjson writes dataclasses itself
            stack.extend(getattr(item, field.name) for field in dataclasses.fields(item))
            continue
        else:
            continue
        count = len(items)
        if count >= _BULK_FROM:
            left -= count >> 2  # a visit costs about as much as typing four items
            if left < 0:
                return None
            kinds = set(map(type, items))
            if kinds <= _PLAIN:
                continue
            if kinds <= _NUMBERS_AND_PLAIN:
                if not kinds <= _NUMBERS:
                    items = [x for x in items if type(x) is float]
                try:
                    total = math.fsum(items)
                except OverflowError:  # finite, but too large to sum: one by one
                    pass
                except ValueError:  # inf + -inf
                    return True
                else:
                    if not math.isfinite(total):  # fsum gives inf or nan only from one
                        return True
                    continue
        stack.extend(items)
    return False
