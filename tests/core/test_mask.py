"""Masking: the C function (the `speedups` extra) and the pure-Python one give the same bytes,
the C one is found when installed and loaded without importing the `websockets` package,
and `SESSION_PY_NO_SPEEDUPS` keeps the pure-Python one."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from session_core import _mask

C_MASK = _mask.load_c_mask()
keys = st.binary(min_size=4, max_size=4)


def test_python_masking_matches_the_rfc_example() -> None:
    # RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
    masked = bytes.fromhex("7f9f4d5158")
    key = bytes.fromhex("37fa213d")
    assert _mask.python_mask(b"Hello", key) == masked
    assert _mask.python_mask(masked, key) == b"Hello"
    assert _mask.python_mask(b"", key) == b""
    assert _mask.python_mask(memoryview(b"xxHelloxx")[2:7], key) == masked


def test_the_c_masking_is_found_and_used_when_installed() -> None:
    # The test extra installs the speedups extra: its absence here is a failure.
    assert importlib.util.find_spec("websockets") is not None
    assert C_MASK is not None
    if os.environ.get(_mask.NO_SPEEDUPS_ENV, "") in ("", "0"):
        assert _mask.ACCELERATED
        assert _mask.IMPLEMENTATION == "websockets.speedups"
        assert _mask.apply_mask is C_MASK


@given(st.binary(max_size=5000), keys, st.integers(0, 7), st.integers(0, 7))
@settings(max_examples=300, deadline=None)
def test_c_and_python_masking_give_the_same_bytes(payload: bytes, key: bytes, head: int, tail: int) -> None:
    assert C_MASK is not None
    expected = _mask.python_mask(payload, key)
    assert len(expected) == len(payload)
    assert C_MASK(payload, key) == expected
    # In place, through a view at any offset (the framing's way with large payloads).
    framed = b"\xaa" * head + payload + b"\x55" * tail
    view = memoryview(framed)[head : head + len(payload)]
    assert C_MASK(view, key) == expected
    assert _mask.python_mask(view, key) == expected
    assert _mask.python_mask(expected, key) == payload  # masking twice gives the payload back


@pytest.mark.parametrize("size", [16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 3 * 16 * 1024 + 7, (1 << 20) + 3])
def test_large_payloads_mask_alike(size: int) -> None:
    # Over 16 KiB, the pure-Python masking works piece by piece.
    assert C_MASK is not None
    payload = os.urandom(size + 2)
    key = os.urandom(4)
    assert C_MASK(payload[1:-1], key) == _mask.python_mask(payload[1:-1], key)
    assert _mask.python_mask(memoryview(payload)[1:-1], key) == C_MASK(payload[1:-1], key)


def _run(code: str, **env: str) -> str:
    environment = {**os.environ, **env}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment
    )
    return out.stdout.strip()


ROUND_TRIP = """
import sys
from session_core import _mask
from tests.helpers import SessionPair
pair = SessionPair()
pair.client.send_notification("n", "é" * 40_000)
pair.pump()
(event,) = pair.server_events
assert event.data == "é" * 40_000, event
print(_mask.ACCELERATED, _mask.IMPLEMENTATION, "websockets" in sys.modules)
"""


def test_no_speedups_keeps_the_python_masking_and_works() -> None:
    assert _run(ROUND_TRIP, SESSION_PY_NO_SPEEDUPS="1") == "False python False"


def test_the_c_masking_is_loaded_without_the_websockets_package() -> None:
    assert _run(ROUND_TRIP, SESSION_PY_NO_SPEEDUPS="0") == "True websockets.speedups False"


def test_websockets_imports_as_usual_afterwards() -> None:
    code = (
        "from session_core import _mask\n"
        "import websockets.speedups, websockets.frames\n"
        "from websockets import speedups\n"
        "print(_mask.ACCELERATED, speedups.apply_mask(b'abcde', b'\\x01\\x02\\x03\\x04'))"
    )
    assert _run(code, SESSION_PY_NO_SPEEDUPS="") == "True b'````d'"
