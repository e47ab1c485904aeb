"""Back-pressure basics, on both adapters and every loop: the bound on handlers in flight,
and a server that stops reading so that TCP pushes back on the peer."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import session_core.driver._dispatch
from session_core import Config, Method, SessionClosed
from tests import wire
from tests.methods import AnySession, echo

from .backend import Backend
from .peers import RawPeer

slow = Method("slow", request=int, response=int, error=str)
hang = Method("hang", request=None, response=None, error=None)
blob = Method("blob", request=tuple[int, str], response=None, error=None)
#: No keepalive: a side that does not read answers no ping, and would be closed for it. A
#: short close timeout: a side that does not read does not answer a close frame either.
QUIET = Config(keepalive_interval=None, close_timeout=0.5)


async def test_at_most_max_incoming_requests_handlers_run_at_once(backend: Backend) -> None:
    running = 0
    most = 0

    async def on_session(session: AnySession) -> None:
        @session.on_request(slow)
        async def _slow(n: int) -> int:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await backend.sleep(0.01)
            running -= 1
            return n * 2

    config = Config(max_incoming_requests=2)
    async with backend.serve(on_session, config=config) as server, backend.connect(server.url) as session:
        results = await backend.gather(*(lambda n=n: session.request(slow, n) for n in range(30)))
    assert results == [n * 2 for n in range(30)]
    assert most == 2


async def test_at_the_bound_the_server_stops_reading_its_socket(backend: Backend) -> None:
    # One request in flight is the bound and its handler never ends: the server must stop
    # reading, so that TCP pushes back on the client, whose notifications stall once the
    # socket buffers are full (instead of piling up in the server's memory).
    async def on_session(session: AnySession) -> None:
        session.on_request(hang, _hang_forever(backend))

    chunk = ("x" * 65536,)
    sent = 0
    config = Config(max_incoming_requests=1, keepalive_interval=None)
    async with (
        backend.serve(on_session, config=config) as server,
        backend.connect(server.url, config=QUIET) as session,
    ):

        async def call() -> None:
            await session.request(hang, None)

        async def flood() -> None:
            nonlocal sent
            await backend.sleep(0.05)  # the request goes first
            while sent < 1000:  # 64 MB: far more than any socket buffer
                await session.notify(blob, (sent, chunk[0]))
                sent += 1

        async def both() -> None:
            await backend.gather(call, flood)

        assert await backend.cancel_after(1.0, both)
        assert 0 < sent < 1000


def _hang_forever(backend: Backend) -> Any:
    async def handler(_: None) -> None:
        await backend.sleep(1000)

    return handler


async def test_closing_at_the_bound_does_not_wait_for_the_close_timeout(backend: Backend) -> None:
    # The server's only request slot is taken by a handler that never ends, and more
    # requests wait unread behind it. Its close must still see the client's answering
    # close frame at once, not after `close_timeout`.
    took: list[float] = []
    done = backend.event()

    async def on_session(session: AnySession) -> None:
        started = backend.event()

        async def handler(_: None) -> None:
            started.set()
            await backend.sleep(1000)

        session.on_request(hang, handler)
        await started.wait()
        start = time.monotonic()
        await session.close()
        took.append(time.monotonic() - start)
        done.set()

    config = Config(max_incoming_requests=1, close_timeout=10)
    async with backend.serve(on_session, config=config) as server, backend.connect(server.url) as session:

        async def closed_request() -> None:
            with pytest.raises(SessionClosed):
                await session.request(hang, None)

        async def closed() -> None:
            await done.wait()

        assert await backend.gather(closed_request, closed_request, closed_request, closed) == [None] * 4
    assert took[0] < 2


async def test_a_flood_of_notifications_stops_the_reader_at_the_bound(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's notification handler blocks: the notifications wait in a queue of at
    # most MAX_QUEUED_NOTIFICATIONS (and what one read brings), then the server stops
    # reading and TCP pushes back on the client. Released, the handler gets every one of
    # them, in order.
    monkeypatch.setattr(session_core.driver._dispatch, "MAX_QUEUED_NOTIFICATIONS", 4)
    release = backend.event()
    got: list[int] = []
    sessions: list[AnySession] = []

    async def on_session(session: AnySession) -> None:
        sessions.append(session)

        @session.on_notification(blob)
        async def _blob(data: tuple[int, str]) -> None:
            await release.wait()
            got.append(data[0])

    chunk = "x" * 65536
    sent = 0
    async with (
        backend.serve(on_session, config=QUIET) as server,
        backend.connect(server.url, config=QUIET) as session,
    ):

        async def flood() -> None:
            nonlocal sent
            while sent < 1000:  # 64 MB: far more than any socket buffer
                await session.notify(blob, (sent, chunk))
                sent += 1

        assert await backend.cancel_after(0.5, flood)
        assert 0 < sent < 1000
        [peer] = sessions
        assert len(peer._notifications) <= 4 + 4  # the bound, and one read's worth
        release.set()
        assert await backend.eventually(lambda: len(got) >= sent, 10)
    assert got == list(range(sent))  # in order, none lost


async def test_a_peer_that_reads_no_answers_meets_back_pressure(backend: Backend) -> None:
    # A raw client sends requests and never reads. Once the socket takes no more answers,
    # the handlers' answers wait (keeping their requests in flight), the server stops
    # reading at the bound, and the client's writes stall. Reading at last, the client
    # gets every answer to every request it sent whole.
    async def on_session(session: AnySession) -> None:
        @session.on_request(echo)
        async def _echo(data: Any) -> Any:
            return data

    payload = "x" * 16384

    def flood_then_read(port: int) -> tuple[int, int]:
        peer = RawPeer.connect(port)
        try:
            assert b" 101 " in peer.handshake(port)
            peer.sock.settimeout(0.5)
            sent = 0
            try:
                while sent < 4000:  # 64 MB of answers: far more than any socket buffer
                    message = f'{{"type":"request","id":{sent},"method":"echo","data":"{payload}"}}'
                    frame = wire.client_frame(wire.TEXT, message.encode())
                    # Whole frames only: a frame the socket takes in part is not counted.
                    if peer.sock.send(frame) < len(frame):
                        break
                    sent += 1
            except (TimeoutError, BlockingIOError):
                pass
            peer.sock.settimeout(10)
            answered: set[int] = set()
            while len(answered) < sent:
                item = peer.recv_frame()
                assert item is not None, f"the stream ended after {len(answered)} of {sent} answers"
                answer = json.loads(item[1])
                assert (item[0], answer["type"], answer["result"]) == (wire.TEXT, "response", payload)
                answered.add(answer["id"])
            return sent, len(answered)
        finally:
            peer.close()

    config = Config(max_incoming_requests=4, keepalive_interval=None)
    async with backend.serve(on_session, config=config) as server:
        sent, answers = await backend.to_thread(lambda: flood_then_read(server.port))
    assert 0 < sent < 4000
    assert answers == sent
