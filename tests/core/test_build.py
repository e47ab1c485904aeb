"""The two builds of `session_core`, pure Python and compiled (mypyc), and the switch.

`session_core.COMPILED` says which one runs; CI's compiled run sets
`SESSION_PY_EXPECT_COMPILED=1` (and may set `0` for the pure one), so that a run meant for
the compiled build can never pass on the pure one unnoticed. `SESSION_PY_NO_EXTENSIONS=1`
forces the pure modules; the misuse of the public API raises the same exceptions in both.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import session_core
from session_core import (
    ClientConnection,
    Config,
    HandshakeAccepted,
    Method,
    RequestReceived,
    ResponseReceived,
    ServerConnection,
    UpgradeRequested,
)

ROOT = Path(__file__).resolve().parents[2]


def compiled_module_names() -> list[str]:
    """The modules the compiled build compiles: pyproject.toml's one list."""
    hook = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    include = hook["targets"]["wheel"]["hooks"]["mypyc"]["include"]
    return [path.strip("/").removesuffix(".py").replace("/", ".") for path in include]


def is_extension(module: ModuleType) -> bool:
    """Whether `module` was loaded from a compiled extension."""
    return (getattr(module, "__file__", None) or "").endswith(tuple(EXTENSION_SUFFIXES))


def pure_python(code: str) -> str:
    """Run `code` in a fresh interpreter over this checkout with `SESSION_PY_NO_EXTENSIONS=1`;
    its standard output."""
    env = {**os.environ, "SESSION_PY_NO_EXTENSIONS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_compiled_tells_which_build_runs() -> None:
    modules = [importlib.import_module(name) for name in compiled_module_names()]
    assert len(modules) >= 5
    kinds = {
        name: is_extension(module) for name, module in zip(compiled_module_names(), modules, strict=True)
    }
    # Never a mix: every listed module compiled, or none.
    assert len(set(kinds.values())) == 1, kinds
    assert session_core.COMPILED is all(kinds.values())
    expected = os.environ.get("SESSION_PY_EXPECT_COMPILED")
    if expected is not None:
        assert session_core.COMPILED is (expected == "1"), (
            f"SESSION_PY_EXPECT_COMPILED={expected} but session_core.COMPILED is {session_core.COMPILED}"
        )


def round_trip() -> Any:
    """A typed request answered between a client and a server in memory; its result."""
    add = Method("add", request=list[int], response=int, error=str)
    client = ClientConnection("example.test:80", now=0.0)
    server = ServerConnection(now=0.0, methods=[add])
    server.receive_data(client.data_to_send(), 0.0)
    assert isinstance(server.next_event(), UpgradeRequested)
    server.accept(now=0.0)
    client.receive_data(server.data_to_send(), 0.0)
    assert isinstance(client.next_event(), HandshakeAccepted)
    request_id = client.send_request(add, [1, 2, 39])
    server.receive_data(client.data_to_send(), 0.0)
    request = server.next_event()
    assert isinstance(request, RequestReceived)
    server.send_response(request.request_id, sum(request.data))
    client.receive_data(server.data_to_send(), 0.0)
    response = client.next_event()
    assert isinstance(response, ResponseReceived)
    assert response.request_id == request_id
    return response.result


def test_a_round_trip() -> None:
    assert round_trip() == 42


def test_no_extensions_forces_the_pure_modules() -> None:
    code = (
        "import sys, json, session_core, session_core.driver, session_asyncio\n"
        "from tests.core.test_build import is_extension, round_trip\n"
        "compiled = [n for n, m in sys.modules.items() if n.startswith('session_core') and is_extension(m)]\n"
        "print(json.dumps([session_core.COMPILED, compiled, round_trip()]))\n"
    )
    assert json.loads(pure_python(code)) == [False, [], 42]


def _open_pair() -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection("example.test:80", now=0.0, subprotocols=["chat"])
    server = ServerConnection(now=0.0)
    server.receive_data(client.data_to_send(), 0.0)
    server.events()
    server.accept(now=0.0)
    client.receive_data(server.data_to_send(), 0.0)
    client.events()
    return client, server


def _requested() -> ServerConnection:
    client = ClientConnection("example.test:80", now=0.0, subprotocols=["chat"])
    server = ServerConnection(now=0.0)
    server.receive_data(client.data_to_send(), 0.0)
    return server


ADD = Method("add", request=list[int], response=int, error=str)
# Values of the wrong type for the arguments they are given to (typed `Any` for mypy).
WRONG_DATA: Any = [object()]
A_NUMBER: Any = 42
A_STRING: Any = "7"

#: Misuses of the public API, each with the exception it raises (the same in both builds).
MISUSES: dict[str, tuple[str, Callable[[], object]]] = {
    "request before open": (
        "LocalProtocolError",
        lambda: ClientConnection("h:80", now=0.0).send_request("m", None),
    ),
    "notification before open": (
        "LocalProtocolError",
        lambda: ClientConnection("h:80", now=0.0).send_notification("m", None),
    ),
    "ping before open": ("LocalProtocolError", lambda: ClientConnection("h:80", now=0.0).send_ping()),
    "reserved close code": ("LocalProtocolError", lambda: _open_pair()[0].close(1005, now=0.0)),
    "close reason too long": ("LocalProtocolError", lambda: _open_pair()[0].close(1000, "x" * 124, now=0.0)),
    "answer to no request": ("LocalProtocolError", lambda: _open_pair()[1].send_response(7, 1)),
    "error answer to no request": ("LocalProtocolError", lambda: _open_pair()[1].send_error_response(7, 1)),
    "protocol error to no request": (
        "LocalProtocolError",
        lambda: _open_pair()[1].send_protocol_error(7, -32603, "x"),
    ),
    "accept before the upgrade request": (
        "LocalProtocolError",
        lambda: ServerConnection(now=0.0).accept(now=0.0),
    ),
    "reject with 200": ("LocalProtocolError", lambda: _requested().reject(200)),
    "subprotocol not offered": (
        "LocalProtocolError",
        lambda: _requested().accept(now=0.0, subprotocol="nope"),
    ),
    "timeout without now": (
        "LocalProtocolError",
        lambda: _open_pair()[0].send_request("m", None, timeout=1.0),
    ),
    "reserved method name": (
        "LocalProtocolError",
        lambda: _open_pair()[1].add_method(Method("$/x", request=int, response=int, error=int)),
    ),
    "bad header": ("LocalProtocolError", lambda: ClientConnection("h:80", now=0.0, headers=[(b"a b", b"v")])),
    "NaN in data": ("EncodingError", lambda: _open_pair()[0].send_request("m", [math.nan])),
    "data of the wrong type": ("EncodingError", lambda: _open_pair()[0].send_request(ADD, WRONG_DATA)),
    "too many pending requests": (
        "TooManyPendingRequests",
        lambda: [
            client.send_request("m", None)
            for client in [_pair_with(Config(max_pending_requests=1))]
            for _ in range(2)
        ],
    ),
    "request after close": ("SessionClosed", lambda: _closed().send_request("m", None)),
    # Wrongly typed arguments: the pure build checks what the compiled one checks.
    "method neither a Method nor a name": (
        "LocalProtocolError",
        lambda: _open_pair()[0].send_request(A_NUMBER, None),
    ),
    "request id not an int": ("TypeError", lambda: _open_pair()[1].send_response(A_STRING, 1)),
    "data to read not bytes": ("TypeError", lambda: _open_pair()[1].receive_data(A_STRING, 0.0)),
}


def _pair_with(config: Config) -> ClientConnection:
    client = ClientConnection("example.test:80", now=0.0, config=config)
    server = ServerConnection(now=0.0)
    server.receive_data(client.data_to_send(), 0.0)
    server.accept(now=0.0)
    client.receive_data(server.data_to_send(), 0.0)
    return client


def _closed() -> ClientConnection:
    client = _open_pair()[0]
    client.close(now=0.0)
    return client


def misuse() -> dict[str, str]:
    """What each misuse raises: the exception's class name (`"nothing"` if it does not)."""
    raised = {}
    for name, (_, call) in MISUSES.items():
        try:
            call()
        except Exception as exc:
            raised[name] = type(exc).__name__
        else:
            raised[name] = "nothing"
    return raised


def test_misuse_raises_the_documented_exceptions() -> None:
    assert misuse() == {name: expected for name, (expected, _) in MISUSES.items()}


def test_misuse_raises_the_same_in_the_pure_build() -> None:
    code = "import json\nfrom tests.core.test_build import misuse\nprint(json.dumps(misuse()))\n"
    assert json.loads(pure_python(code)) == misuse()


def test_a_stale_in_place_build_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import stale_build  # noqa: PLC0415 - the session's own check

    monkeypatch.delenv("SESSION_PY_NO_EXTENSIONS", raising=False)

    package = tmp_path / "session_core"
    package.mkdir()
    source = package / "_ws.py"
    source.write_text("")
    assert stale_build(tmp_path) is None  # no compiled build: nothing to be stale
    built = package / f"_ws{EXTENSION_SUFFIXES[0]}"
    built.write_bytes(b"")
    os.utime(source, (1_000, 1_000))
    os.utime(built, (2_000, 2_000))
    assert stale_build(tmp_path) is None  # built after the last edit
    os.utime(source, (3_000, 3_000))
    problem = stale_build(tmp_path)
    assert problem is not None
    assert "session_core/_ws.py" in problem
    assert "bash run.sh compile" in problem


def test_no_exception_is_left_being_handled() -> None:
    # A compiled generator that yields inside an `except` block leaves that exception set as
    # the one being handled: every later exception would chain onto it, and keep it alive.
    server = ServerConnection(now=0.0)
    server.receive_data(b"\x00\x01 garbage\r\n\r\n", 0.0)
    assert server.events()
    assert sys.exc_info() == (None, None, None)
    server = _open_pair()[1]
    invalid_utf8 = bytes([0x81, 0x82, 0x00, 0x00, 0x00, 0x00, 0xC3, 0x28])  # masked, key 0
    server.receive_data(invalid_utf8, 0.0)
    assert server.events()
    assert sys.exc_info() == (None, None, None)
    try:
        raise ValueError("later")
    except ValueError as exc:
        assert exc.__context__ is None
