"""Opening, refusing, losing and shutting down sessions."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import session_core.driver
import session_trio
from session_core import (
    Config,
    ConnectionClosed,
    HandshakeError,
    UpgradeRequested,
)
from tests.helpers import CLOSE, TEXT, client_frame

from .support import (
    RawPeer,
    raw_server,
    running_server,
    welcome,
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


@pytest.mark.autojump
async def test_a_server_that_never_answers_times_out() -> None:
    async def mute(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with raw_server(mute) as port:
        start = trio.current_time()
        with pytest.raises(TimeoutError):
            async with session_trio.connect(f"ws://127.0.0.1:{port}/", connect_timeout=4):
                pass
        assert trio.current_time() - start == pytest.approx(4)


@pytest.mark.autojump
async def test_an_upgrade_hook_slower_than_the_handshake_timeout(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = trio.Event()

    async def dawdle(request: UpgradeRequested, address: Any) -> None:
        try:
            await trio.sleep(1000)
        finally:
            cancelled.set()

    config = Config(handshake_timeout=5)
    async with running_server(on_upgrade=dawdle, config=config) as url:
        start = trio.current_time()
        with pytest.raises(HandshakeError):
            async with session_trio.connect(url, connect_timeout=100):
                pass
        assert trio.current_time() - start == pytest.approx(5)
        await cancelled.wait()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _close_frame(code: int, reason: bytes) -> bytes:
    return client_frame(CLOSE, code.to_bytes(2, "big") + reason)


@pytest.mark.autojump
async def test_notification_handlers_get_a_bounded_grace_after_the_end() -> None:
    ended: list[float] = []
    cancelled: list[float] = []

    async def on_session(session: session_trio.Session) -> None:
        @session.on_notification(welcome)
        async def _(text: str) -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.append(trio.current_time())

        await session.wait_closed()
        ended.append(trio.current_time())

    async with running_server(on_session) as url:
        peer = await RawPeer.connect(_port(url))
        note = b'{"type":"notification","method":"welcome","data":"hello"}'
        await peer.stream.send_all(client_frame(TEXT, note) + _close_frame(1000, b""))
        await peer.expect(ConnectionClosed)
        closed_at = trio.current_time()
        await peer.stream.aclose()
        while not ended:
            await trio.sleep(0.1)
    assert cancelled[0] - closed_at == pytest.approx(session_core.driver.TEARDOWN_GRACE, abs=0.1)
    assert ended[0] >= cancelled[0]
