"""The JSON codec: orjson, made strict where orjson is lenient.

orjson already refuses `NaN`/`Infinity` and lone surrogates on input, refuses lone
surrogates on output, and limits nesting depth instead of recursing without bound. The one
leniency left is output: it writes a non-finite float as `null`. Every non-finite float
becomes `null`, so a value whose encoding holds no `null` needs no further check.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import orjson

from ._errors import EncodingError
from ._methods import _DEFAULT_CONVERTER as converter

JSONDecodeError = orjson.JSONDecodeError
loads = orjson.loads


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
    if b"null" in text and _has_non_finite(value):
        raise EncodingError("value cannot be sent as JSON: NaN and Infinity are not JSON")
    return text


def _default(value: Any) -> Any:
    # What orjson cannot write itself: attrs instances inside a value typed `Any`, which
    # is then passed to orjson untouched instead of being copied by cattrs first.
    if attrs.has(type(value)):
        return converter.unstructure(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif attrs.has(type(item)):
            stack.append(converter.unstructure(item))
    return False
