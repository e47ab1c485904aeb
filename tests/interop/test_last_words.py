"""Messages that arrive in the same read as the peer's close frame.

A JavaScript peer that writes `ws.send(note); ws.close(4000, "bye")`, a browser page
being left, a session-rs peer that sends a notification and then closes: the message and
the close frame reach our server together. A message received before the close frame was
received while the session was open; session-rs handles the messages of a connection one
at a time, in order, so it handles it before it sees the close.
"""

from __future__ import annotations

import pytest

from .rawpeer import CLOSE, TEXT, RawPeer, close_payload, masked, raw_client
from .support import ADAPTERS, assert_quiet, serving
from .test_session_rs import PROMPT, open_as_session_rs_client


def send_with_close(peer: RawPeer, message: bytes) -> None:
    """`message` and a close frame (4000, "bye") in one write, then our answer and the end."""
    peer.sock.sendall(masked(TEXT, message) + masked(CLOSE, close_payload(4000, "bye")))
    answer = peer.read_frame()
    assert (answer.opcode, answer.payload) == (CLOSE, close_payload(4000, "bye"))
    peer.expect_eof(within=PROMPT)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_notification_sent_just_before_the_close_is_handled(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """(It was dropped: the adapters cleared their queue of notifications at the close.)"""
    with serving(adapter) as served, raw_client(served.port) as peer:
        open_as_session_rs_client(peer, served.port)
        send_with_close(peer, b'{"type":"notification","method":"note","data":"last words"}')
        assert served.record.wait("closed") == [(4000, "bye")]
        assert served.record.wait("note", timeout=1) == [("last words",)]
    assert_quiet(caplog)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_request_sent_just_before_the_close_lets_the_server_shut_down(
    adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The request cannot be answered (no data frame may follow our close frame), but the
    server must still forget the session and shut down promptly (`serving` allows 2 s).
    (asyncio hung: a handler task cancelled before its first step never ran its `finally`,
    so the session kept it, and `Server.wait_closed()` never returned.)"""
    with serving(adapter) as served, raw_client(served.port) as peer:
        open_as_session_rs_client(peer, served.port)
        send_with_close(peer, b'{"type":"request","id":1,"method":"add","data":{"a":1,"b":2}}')
        assert served.record.wait("closed") == [(4000, "bye")]
    assert_quiet(caplog)
