"""Failures inside handlers and user code, and what the peer may get wrong."""

from __future__ import annotations

import logging

import pytest

from session_core import (
    ResponseReceived,
)
from tests.helpers import TEXT, client_frame

from .support import AddArgs, RawPeer, add, running_server


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


async def test_invalid_messages_are_logged_without_payload_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server() as url:
        peer = await RawPeer.connect(_port(url))
        await peer.stream.send_all(
            client_frame(TEXT, b'{"type":"request","id":-1,"method":"add","data":"hunter2"}')
            + client_frame(TEXT, b"not json hunter2")
        )
        # A response to nothing the server asked for, then a valid request: still served.
        peer.conn.send_request(add, AddArgs(2, 2))
        await peer.stream.send_all(client_frame(TEXT, b'{"type":"response","id":99,"result":"hunter2"}'))
        await peer.flush()
        answer = await peer.expect(ResponseReceived)
        assert answer.result == 4
        await peer.stream.aclose()
    warnings = [r for r in caplog.records if r.name == "session_trio" and r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("hunter2" not in r.getMessage() for r in caplog.records)
    assert "99" in warnings[2].getMessage()
