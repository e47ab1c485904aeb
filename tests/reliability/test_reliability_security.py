"""Security: TLS verification by default, the upgrade hook as a gate, internal errors that
leak nothing, and logs that carry no payload.
"""

from __future__ import annotations

import enum
import json
import logging
import ssl
from typing import Any

import pytest
import trustme

from session_core import (
    Accept,
    Config,
    HandshakeRejected,
    InternalError,
    Method,
    Reject,
    UpgradeRequested,
)
from tests.methods import echo

from .support import ADAPTERS, TEXT, AnySession, Backend, RawPeer, client_frame

crash = Method("crash", request=str, response=None, error=str)
count = Method("count", request=int, response=int, error=str)
nan = Method("nan", request=None, response=float, error=str)
note = Method("note", request=str, response=None, error=None)
tally = Method("tally", request=int, response=None, error=None)


class Color(enum.Enum):
    RED = "red"


paint = Method("paint", request=Color, response=None, error=None)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _echo(data: Any) -> Any:
    return data


# -- TLS -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_wss_verifies_the_certificate_by_default(backend: Backend, ca: trustme.CA) -> None:
    opened: list[AnySession] = []

    async def on_session(session: AnySession) -> None:
        opened.append(session)
        session.on_request(echo, _echo)

    async def main() -> None:
        # A certificate from a CA the client does not trust: refused with no ssl_context.
        context = _server_context(ca, "127.0.0.1", "localhost")
        async with backend.serve(on_session, ssl_context=context) as server:
            assert server.url.startswith("wss://")
            with pytest.raises(ssl.SSLCertVerificationError):
                await backend.within(15.0, lambda: _connect_and_use(backend, server.url))
            assert opened == []
            # Trusting the CA, it works.
            async with backend.connect(server.url, ssl_context=_trusting(ca)) as session:
                assert await session.request(echo, "over TLS") == "over TLS"
            assert len(opened) == 1
        # A trusted CA, but a certificate for another name: refused too.
        async with backend.serve(on_session, ssl_context=_server_context(ca, "example.org")) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await backend.within(15.0, lambda: _connect_and_use(backend, server.url, _trusting(ca)))
        assert len(opened) == 1

    backend.run(main)


async def _connect_and_use(backend: Backend, url: str, context: ssl.SSLContext | None = None) -> None:
    async with backend.connect(url, ssl_context=context) as session:
        await session.request(echo, "must not get here")


# -- the upgrade hook ------------------------------------------------------------------

ALLOWED_ORIGIN = "https://app.example"
TOKEN = "Bearer 7c0ffee"


def _gate(request: UpgradeRequested, address: Any) -> Accept | Reject:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers}
    if headers.get("origin") != ALLOWED_ORIGIN:
        return Reject(status_code=403, body=b"origin not allowed")
    if headers.get("authorization") != TOKEN:
        return Reject(status_code=401, headers=(("WWW-Authenticate", "Bearer"),))
    return Accept()


async def _async_gate(request: UpgradeRequested, address: Any) -> Accept | Reject:
    return _gate(request, address)


@pytest.mark.parametrize("hook", [_gate, _async_gate], ids=["sync", "async"])
@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_the_upgrade_hook_rejects_by_origin_and_credentials(backend: Backend, hook: Any) -> None:
    opened: list[AnySession] = []

    async def on_session(session: AnySession) -> None:
        opened.append(session)
        session.on_request(echo, _echo)

    refused = [
        ((), 403),
        ((("Origin", "https://evil.example"), ("Authorization", TOKEN)), 403),
        ((("Origin", ALLOWED_ORIGIN),), 401),
        ((("Origin", ALLOWED_ORIGIN), ("Authorization", "Bearer guess")), 401),
    ]

    def raw_attempt(port: int) -> bytes:
        peer = RawPeer.connect(port)
        try:
            head = peer.handshake(port, headers=(("Origin", "https://evil.example"),))
            rest = peer.buffer
            while data := peer.sock.recv(4096):
                rest += data
            return head + rest
        finally:
            peer.close()

    async def main() -> None:
        async with backend.serve(on_session, on_upgrade=hook) as server:
            for headers, status in refused:
                with pytest.raises(HandshakeRejected) as rejected:
                    async with backend.connect(server.url, headers=headers):
                        raise AssertionError("a rejected client got a session")
                assert rejected.value.status_code == status
            # A raw client sees an HTTP error, then the end of the connection.
            answer = await backend.to_thread(lambda: raw_attempt(server.port))
            assert answer.startswith(b"HTTP/1.1 403 "), answer[:60]
            assert b"origin not allowed" in answer and b" 101 " not in answer, answer
            assert opened == []
            good = (("Origin", ALLOWED_ORIGIN), ("Authorization", TOKEN))
            async with backend.connect(server.url, headers=good) as session:
                assert await session.request(echo, "let in") == "let in"
            assert len(opened) == 1

    backend.run(main)


# -- internal errors -------------------------------------------------------------------

SECRET = "hunter2-db-password"


@pytest.mark.parametrize("expose", [False, True], ids=["default", "exposed"])
@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_internal_errors_leak_nothing_unless_the_server_opts_in(
    backend: Backend, expose: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL)  # the failures are logged on purpose

    async def on_session(session: AnySession) -> None:
        async def _crash(text: str) -> None:
            raise RuntimeError(f"connecting with password {SECRET} failed")

        async def _nan(_: None) -> float:
            return float("nan")  # cannot be sent: -32603 too

        session.on_request(crash, _crash)
        session.on_request(nan, _nan)

    def raw_answer(port: int) -> bytes:
        peer = RawPeer.connect(port)
        try:
            assert b" 101 " in peer.handshake(port)
            peer.sock.sendall(client_frame(TEXT, b'{"type":"request","id":1,"method":"crash","data":"x"}'))
            item = peer.recv_frame()
            assert item is not None
            return item[1]
        finally:
            peer.close()

    async def main() -> None:
        config = Config(expose_internal_errors=expose)
        async with backend.serve(on_session, config=config) as server:
            async with backend.connect(server.url) as session:
                with pytest.raises(InternalError) as failed:
                    await session.request(crash, "x")
                with pytest.raises(InternalError) as unsendable:
                    await session.request(nan, None)
            wire = await backend.to_thread(lambda: raw_answer(server.port))
        error = json.loads(wire)["error"]
        assert error["code"] == -32603
        for text in (failed.value.message, str(failed.value.error), wire.decode()):
            assert "Traceback" not in text and 'File "' not in text and ".py" not in text
        if expose:
            assert SECRET in failed.value.message and "RuntimeError" in failed.value.message
            assert SECRET in error["message"]
        else:
            assert failed.value.message == "internal error"
            assert error == {"code": -32603, "message": "internal error"}
            assert SECRET.encode() not in wire
            assert unsendable.value.message == "internal error"

    backend.run(main)


# -- logs ------------------------------------------------------------------------------

DATA_SECRET = "s3cr3t-request-data"
RESULT_SECRET = "s3cr3t-result"
NOTE_SECRET = "s3cr3t-notification"
INVALID_SECRET = "s3cr3t-in-an-invalid-message"
EXCEPTION_SECRET = "s3cr3t-in-the-users-own-exception"
PAYLOAD_SECRETS = (DATA_SECRET, RESULT_SECRET, NOTE_SECRET, INVALID_SECRET)

INVALID_MESSAGES = [
    f'{{"type":"request","id":1,"method":"echo","data":"{INVALID_SECRET}"',  # not JSON
    f'["{INVALID_SECRET}"]',  # not an object
    f'{{"type":"{INVALID_SECRET}","id":1}}',  # unknown type
    f'{{"type":"request","id":"{INVALID_SECRET}","method":"echo"}}',  # bad id
    f'{{"type":"request","id":2,"method":"count","data":"{INVALID_SECRET}"}}',  # -32602
    f'{{"type":"request","id":3,"method":"unknown","data":"{INVALID_SECRET}"}}',  # -32601
    f'{{"type":"notification","method":"tally","data":"{INVALID_SECRET}"}}',  # invalid data
    f'{{"type":"notification","method":"nobody","data":"{INVALID_SECRET}"}}',  # unhandled
    f'{{"type":"response","id":99,"result":"{INVALID_SECRET}"}}',  # unknown id
    f'{{"type":"errorresponse","id":98,"error":"{INVALID_SECRET}"}}',  # unknown id
    f'{{"type":"notification","method":"$/cancel","data":"{INVALID_SECRET}"}}',  # bad cancel
]


def _log_text(records: list[logging.LogRecord]) -> list[tuple[logging.LogRecord, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [(record, formatter.format(record)) for record in records]


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_no_log_line_carries_a_payload(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def on_session(session: AnySession) -> None:
        async def _echo_and_more(data: Any) -> Any:
            return {"echo": data, "extra": RESULT_SECRET}

        async def _crash(text: str) -> None:
            # The user puts a secret in its own exception's message: the traceback logged
            # for a failing handler shows it (the user's text), but never the request data.
            raise ValueError(f"failed: {EXCEPTION_SECRET}")

        async def _count(n: int) -> int:
            return n

        async def _note(text: str) -> None:
            raise ValueError(f"notification handler failed: {EXCEPTION_SECRET}")

        async def _tally(n: int) -> None:
            pass

        session.on_request(echo, _echo_and_more)
        session.on_request(crash, _crash)
        session.on_request(count, _count)
        session.on_notification(note, _note)
        session.on_notification(tally, _tally)

    def hostile_client(port: int) -> None:
        peer = RawPeer.connect(port)
        try:
            assert b" 101 " in peer.handshake(port)
            for text in INVALID_MESSAGES:
                peer.sock.sendall(client_frame(TEXT, text.encode()))
            peer.sock.sendall(client_frame(TEXT, b'{"type":"request","id":50,"method":"echo","data":"end"}'))
            while (item := peer.recv_frame()) is not None:  # up to the answer to the last request
                if b'"id":50' in item[1]:
                    break
        finally:
            peer.close()

    async def main() -> None:
        async with backend.serve(on_session) as server:
            async with backend.connect(server.url) as session:
                assert (await session.request(echo, DATA_SECRET))["extra"] == RESULT_SECRET
                with pytest.raises(InternalError):
                    await session.request(crash, DATA_SECRET)
                await session.notify(note, NOTE_SECRET)
                await session.notify("nobody-listens", NOTE_SECRET)
                await session.request(echo, "flush")  # the notifications were handled by now
                await backend.sleep(0.1)
            await backend.to_thread(lambda: hostile_client(server.port))
            await backend.sleep(0.2)

    backend.run(main)
    logged = _log_text(caplog.records)
    assert len(logged) > 10  # the run did log: warnings, debug lines, two tracebacks
    for record, text in logged:
        for secret in PAYLOAD_SECRETS:
            assert secret not in text, f"{secret!r} in a log line: {text[:300]}"
        if EXCEPTION_SECRET in text:
            # Only in the traceback of a failing handler, from the user's own message.
            assert record.exc_info is not None and EXCEPTION_SECRET in str(record.exc_info[1]), text
            assert EXCEPTION_SECRET not in record.getMessage()
    tracebacks = [r for r, text in logged if EXCEPTION_SECRET in text]
    assert len(tracebacks) == 2  # the request handler and the notification handler


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_invalid_enum_data_is_logged_without_the_value(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # BUG-4 (fixed): `describe_error` quoted the conversion error's text, which for an Enum
    # or a Literal holds the peer's value; the adapters log that reason at WARNING.
    caplog.set_level(logging.DEBUG)

    async def on_session(session: AnySession) -> None:
        async def _paint(color: Color) -> None:
            pass

        session.on_notification(paint, _paint)

    async def main() -> None:
        async with backend.serve(on_session) as server, backend.connect(server.url) as session:
            await session.notify("paint", INVALID_SECRET)
            await backend.sleep(0.3)

    backend.run(main)
    assert not [text for _, text in _log_text(caplog.records) if INVALID_SECRET in text]
