"""Masking (RFC 6455 5.3): XOR with a 4-byte key repeated, at C speed when it can be.

Every frame a client sends is masked and every frame a server receives must be unmasked;
for large messages this is most of the cost of a frame in pure Python. The C function is
borrowed from the `websockets` package (`websockets.speedups.apply_mask`, installed by the
`session-py[speedups]` extra). It is not part of websockets' documented API, so it is used
with care: it is loaded alone, from its file, without importing the `websockets` package
(which would load `socket` and `selectors`, which the core never does); it must give the
right bytes on a known input; and anything going wrong on the way leaves the pure-Python
code in use. Tested with websockets 17.4 (`pyproject.toml` bounds the extra to 17.x).

`ACCELERATED` tells which is in use. Setting the environment variable
`SESSION_PY_NO_SPEEDUPS` (to anything but `0`) before `session_core` is imported keeps the
pure-Python masking even when the C one is installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, FileFinder
from importlib.util import find_spec, module_from_spec
from typing import Final

#: The environment variable that keeps the pure-Python masking.
NO_SPEEDUPS_ENV: Final = "SESSION_PY_NO_SPEEDUPS"
_BORROWED: Final = "websockets.speedups"

Masker = Callable[[bytes | memoryview, bytes], bytes]
"`mask(payload, key)`: `payload` XOR `key` (4 bytes) repeated; a new `bytes`."


#: Payloads longer than this are masked in pieces of this size (a multiple of 4).
_PIECE: Final = 16 * 1024


def python_mask(payload: bytes | memoryview, key: bytes) -> bytes:
    """Mask (or unmask: it is the same) `payload` with the 4-byte `key`, in pure Python.

    Big-integer XORs instead of a loop over bytes: one for the whole of a short payload,
    one per 16 KiB piece of a long one (twice as fast on 256 KiB and more as one XOR over
    the whole, whose integers no longer fit the CPU's caches).
    """
    length = len(payload)
    if length <= _PIECE:
        if not length:
            return b""
        repeated = (key * ((length + 3) >> 2))[:length]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
            length, "little"
        )
    view = memoryview(payload)
    whole = int.from_bytes(key * (_PIECE >> 2), "little")
    pieces = [
        (int.from_bytes(view[start : start + _PIECE], "little") ^ whole).to_bytes(_PIECE, "little")
        for start in range(0, length - _PIECE + 1, _PIECE)
    ]
    rest = length % _PIECE
    if rest:  # the pieces are whole keys long: the rest starts with the key's first byte
        pieces.append(python_mask(view[length - rest :], key))
    return b"".join(pieces)


def load_c_mask() -> Masker | None:
    """websockets' C `apply_mask` if it is installed and gives the right bytes, else `None`
    (whatever `SESSION_PY_NO_SPEEDUPS` says)."""
    try:
        module = sys.modules.get(_BORROWED)
        if module is None:
            # `find_spec` of a top-level package locates it without importing it.
            package = find_spec(_BORROWED.partition(".")[0])
            if package is None or not package.submodule_search_locations:
                return None
            loader = (ExtensionFileLoader, EXTENSION_SUFFIXES)
            spec = None
            for location in package.submodule_search_locations:
                spec = FileFinder(location, loader).find_spec(_BORROWED)
                if spec is not None:
                    break
            if spec is None or spec.loader is None:
                return None
            module = module_from_spec(spec)
            spec.loader.exec_module(module)
            # A single-phase extension module registers itself under its name; taken out
            # again, so that importing `websockets.speedups` later goes through the
            # package as usual (and finds the module already initialised).
            if sys.modules.get(_BORROWED) is module:
                del sys.modules[_BORROWED]
        mask: Masker = module.apply_mask
        # A known answer, covering the vectorised part and the bytes after it.
        sample, key = bytes(range(37)), b"\x01\x80\x7f\xff"
        expected = python_mask(sample, key)
        if mask(sample, key) != expected or mask(memoryview(sample), key) != expected:
            return None
    except Exception:  # missing, broken, or changed: the pure-Python masking stays
        return None
    return mask


_borrowed = None if os.environ.get(NO_SPEEDUPS_ENV, "") not in ("", "0") else load_c_mask()

ACCELERATED: Final[bool] = _borrowed is not None
"Whether masking runs at C speed (`websockets.speedups`), not in pure Python."

IMPLEMENTATION: Final[str] = _BORROWED if _borrowed is not None else "python"
"Which masking is in use: `'websockets.speedups'` or `'python'`."

apply_mask: Final[Masker] = _borrowed if _borrowed is not None else python_mask
"""Mask (or unmask) `payload` (bytes, or a contiguous memoryview) with the 4-byte `key`:
the C function when `ACCELERATED`, else `python_mask`."""
