"""The public names are pinned: changing them is a decision, not an accident."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import session_core

# The names users write (README, docs/architecture.md).
CONTRACT = {"Method", "MethodError", "RemoteError", "SessionClosed"}


def test_contract_names_are_exported() -> None:
    assert set(session_core.__all__) >= CONTRACT


def test_every_export_exists_and_is_documented() -> None:
    for name in session_core.__all__:
        obj = getattr(session_core, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__doc__ or source_docstring(obj), name


def source_docstring(obj: object) -> str | None:
    """The docstring of a class or function as its source file has it: the compiled build's
    classes carry none at run time (the documentation is read from the source)."""
    module = sys.modules[getattr(obj, "__module__", "")]
    path = Path(inspect.getfile(module)).with_name(module.__name__.rpartition(".")[2] + ".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == getattr(obj, "__name__", None):
            return ast.get_docstring(node)
    return None


def test_exports_are_pinned() -> None:
    assert sorted(session_core.__all__) == sorted(
        [
            "Accept", "Backoff", "CANCEL_METHOD", "CancelRequested", "ClientConnection", "CloseCode",
            "Config",
            "Connection", "ConnectionClosed",
            "EncodingError", "ErrorCode", "ErrorResponseReceived", "Event", "HandshakeAccepted", "Headers",
            "HandshakeError", "HandshakeRejected", "InternalError", "InvalidMessageReceived",
            "InvalidRequestData", "InvalidResponse", "InvalidResponseReceived", "LocalProtocolError",
            "Method", "MethodError", "MethodNotFound", "NotificationReceived",
            "PongReceived", "ProtocolError", "ProtocolErrorResponse", "Reject", "RemoteError",
            "RemoteProtocolError", "RequestAborted",
            "RequestCancelled", "RequestReceived", "RequestRejected", "RequestTimedOut",
            "ResponseReceived", "Role", "ServerConnection", "SessionClosed", "SessionError", "State",
            "TooManyPendingRequests", "UnexpectedResponseReceived", "UpgradeRejected",
            "UpgradeRequested", "make_converter",
        ]
    )  # fmt: skip
