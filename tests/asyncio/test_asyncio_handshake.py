"""The opening handshake, the upgrade hook, plain HTTP, TLS and Unix sockets."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

import session_asyncio
from session_core import Accept, HandshakeRejected, LocalProtocolError, Reject, UpgradeRequested

from .support import AddArgs, add, running, url_of


def decide(request: UpgradeRequested, remote_address: Any) -> Accept | Reject | None:
    assert remote_address[0] == "127.0.0.1"
    if request.path == "/forbidden":
        return Reject(status_code=403, body=b"nope", headers=(("x-why", "policy"),))
    if "chat" in request.subprotocols:
        return Accept(subprotocol="chat", headers=(("x-hello", "1"),))
    return None


async def decide_later(request: UpgradeRequested, remote_address: Any) -> Accept | Reject | None:
    await asyncio.sleep(0.01)
    return decide(request, remote_address)


@pytest.mark.parametrize("hook", [decide, decide_later], ids=["sync", "async"])
async def test_on_upgrade_decides(hook: session_asyncio.UpgradeHook) -> None:
    async with running(on_upgrade=hook) as server:
        with pytest.raises(HandshakeRejected) as rejected:
            async with session_asyncio.connect(url_of(server, path="/forbidden")):
                pass
        assert rejected.value.status_code == 403
        assert rejected.value.body == b"nope"
        assert (b"x-why", b"policy") in rejected.value.headers

        async with session_asyncio.connect(url_of(server), subprotocols=["other", "chat"]) as session:
            assert session.subprotocol == "chat"
            assert (b"x-hello", b"1") in session.response_headers
            assert await session.request(add, AddArgs(1, 2)) == 3

        async with session_asyncio.connect(url_of(server)) as session:  # None accepts
            assert session.subprotocol is None
            assert await session.request(add, AddArgs(1, 2)) == 3


async def test_a_failing_or_invalid_upgrade_hook_rejects_with_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(request: UpgradeRequested, remote_address: Any) -> Any:
        if request.path == "/raise":
            raise RuntimeError("hook bug")
        if request.path == "/wrong-type":
            return "yes"  # neither Accept, Reject nor None
        return Accept(subprotocol="never-offered")

    with caplog.at_level(logging.ERROR, logger="session_asyncio"):
        async with running(on_upgrade=broken) as server:
            for path in ("/raise", "/invalid", "/wrong-type"):
                with pytest.raises(HandshakeRejected) as rejected:
                    async with session_asyncio.connect(url_of(server, path=path)):
                        pass
                assert rejected.value.status_code == 500
    assert any("hook bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_a_plain_http_get_gets_200_ok() -> None:
    async with running() as server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = await asyncio.wait_for(reader.read(), 2)
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b"OK"


async def test_urls_are_checked() -> None:
    with pytest.raises(LocalProtocolError):
        async with session_asyncio.connect("http://127.0.0.1:1/"):
            pass
    with pytest.raises(LocalProtocolError):
        async with session_asyncio.connect("ws://127.0.0.1:1/", ssl_context=ssl.create_default_context()):
            pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with running(ssl_context=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        async with session_asyncio.connect(f"wss://localhost:{port}/", ssl_context=client_context) as session:
            assert await session.request(add, AddArgs(20, 22)) == 42
            assert (
                len(await asyncio.gather(*(session.request(add, AddArgs(i, i)) for i in range(200)))) == 200
            )
        # Without a context, the system's trust store is used: our test CA is not in it.
        with pytest.raises(ssl.SSLCertVerificationError):
            async with session_asyncio.connect(f"wss://localhost:{port}/"):
                pass


async def test_unix_sockets(tmp_path: Path) -> None:
    path = str(tmp_path / "session.sock")
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        seen.set_result(session.path)

        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            return args.a + args.b

    async with (
        await session_asyncio.unix_serve(on_session, path) as server,
        session_asyncio.unix_connect(path, "/over/unix") as session,
    ):
        assert server.is_serving()
        assert await session.request(add, AddArgs(2, 3)) == 5
        assert await seen == "/over/unix"
