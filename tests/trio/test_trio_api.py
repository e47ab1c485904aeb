"""The public names of session_trio, pinned."""

from __future__ import annotations

import inspect

import session_trio


def test_exports() -> None:
    assert sorted(session_trio.__all__) == [
        "NotificationHandler",
        "OnSession",
        "RequestHandler",
        "Session",
        "UpgradeHook",
        "connect",
        "keep_connected",
        "open_hub",
        "reconnecting",
        "serve",
        "serve_listeners",
        "unix_connect",
        "unix_serve",
    ]
    for name in session_trio.__all__:
        assert getattr(session_trio, name) is not None


def test_session_public_members_are_documented() -> None:
    public = {name for name in dir(session_trio.Session) if not name.startswith("_")}
    assert public == {
        "close",
        "close_code",
        "close_nowait",
        "close_reason",
        "closed",
        "handshake_over",
        "hub",
        "id",
        "join",
        "leave",
        "notify",
        "notify_nowait",
        "on_any_notification",
        "on_any_request",
        "on_notification",
        "on_request",
        "path",
        "ping",
        "remote_address",
        "request",
        "request_headers",
        "response_headers",
        "start",
        "subprotocol",
        "wait_closed",
        "wait_handshake",
    }
    for name in public:
        assert inspect.getdoc(getattr(session_trio.Session, name)), name
    for name in ("connect", "unix_connect", "serve", "unix_serve", "serve_listeners"):
        doc = inspect.getdoc(getattr(session_trio, name))
        assert doc is not None
        assert "Args:" in doc, name
