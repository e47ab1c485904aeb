"""Back-pressure both ways: the bound on handlers in flight, and write flow control."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest

import session_asyncio
import session_core.driver._dispatch
from session_core import Config, Method

from .support import UPGRADE, AddArgs, add, echo, masked_frame, running, url_of

blob = Method("blob", request=tuple[int, str], response=None, error=None)


async def test_at_most_max_incoming_requests_handlers_run_at_once() -> None:
    running_now = peak = 0
    reading_while_full: list[bool] = []
    config = Config(max_incoming_requests=2)

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_request(add)
        async def _add(args: AddArgs) -> int:
            nonlocal running_now, peak
            running_now += 1
            peak = max(peak, running_now)
            await asyncio.sleep(0.01)
            if running_now == 2:
                # At the bound the session stops reading: the client feels TCP back-pressure.
                assert session._transport is not None
                reading_while_full.append(session._transport.is_reading())
            running_now -= 1
            return args.a + args.b

    async with (
        running(on_session, config=config) as server,
        session_asyncio.connect(url_of(server)) as session,
    ):
        results = await asyncio.gather(*(session.request(add, AddArgs(i, 1)) for i in range(30)))
    assert results == [i + 1 for i in range(30)]
    assert peak == 2
    assert reading_while_full and not any(reading_while_full)


async def test_write_flow_control_loses_nothing_to_a_slow_reader() -> None:
    count, size = 400, 40_000  # 16 MB: far more than the socket buffers hold
    payload = "x" * size
    biggest_buffer = 0
    was_paused = False
    sent = asyncio.Event()

    async def on_session(session: session_asyncio.Session) -> None:
        nonlocal biggest_buffer, was_paused
        transport = session._transport
        assert transport is not None
        for i in range(count):
            await session.notify(blob, (i, payload))
            biggest_buffer = max(biggest_buffer, transport.get_write_buffer_size())
            was_paused = was_paused or session._write_paused
        sent.set()

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        got: list[int] = []
        done = asyncio.Event()

        @session.on_notification(blob)
        async def _blob(data: tuple[int, str]) -> None:
            number, text = data
            assert text == payload
            got.append(number)
            if len(got) == count:
                done.set()

        await asyncio.sleep(0)  # the session has started reading: now stop for a while
        assert session._transport is not None
        session._transport.pause_reading()
        await asyncio.sleep(0.3)
        assert not sent.is_set()  # the server waits for us
        session._transport.resume_reading()
        await asyncio.wait_for(done.wait(), 10)
        await sent.wait()
    assert got == list(range(count))
    assert was_paused
    # The write buffer stays near the high-water mark (64 KiB) plus one batch of sends
    # (64 KiB and a message): far below the 16 MB sent.
    assert biggest_buffer < 500_000, biggest_buffer


async def test_tcp_nodelay_is_set_on_both_ends() -> None:
    peer: asyncio.Future[session_asyncio.Session] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        peer.set_result(session)

    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        for end in (session, await peer):
            assert end._transport is not None
            sock = end._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_a_flood_of_notifications_stops_reading_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's notification handler blocks: the notifications wait in a queue of at
    # most MAX_QUEUED_NOTIFICATIONS (and what one read brings), in one task, then the
    # server stops reading and TCP pushes back on the client. Released, the handler gets
    # every one of them, in order.
    monkeypatch.setattr(session_core.driver._dispatch, "MAX_QUEUED_NOTIFICATIONS", 4)
    release = asyncio.Event()
    got: list[int] = []
    server_side: asyncio.Future[session_asyncio.Session] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        @session.on_notification(blob)
        async def _blob(data: tuple[int, str]) -> None:
            await release.wait()
            got.append(data[0])

        server_side.set_result(session)

    chunk = "x" * 65536
    sent = 0
    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:
        peer = await server_side
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                while sent < 1000:  # 64 MB: far more than any socket buffer
                    await session.notify(blob, (sent, chunk))
                    sent += 1
        assert 0 < sent < 1000
        assert len(peer._notifications) <= 4 + 4  # the bound, and one 256 KiB read
        assert len(peer._tasks) == 1  # one task delivers them all
        assert peer._transport is not None and not peer._transport.is_reading()
        release.set()
        async with asyncio.timeout(10):
            while len(got) < sent:
                await asyncio.sleep(0.01)
    assert got == list(range(sent))  # in order, none lost


async def test_a_peer_that_reads_no_answers_meets_back_pressure() -> None:
    # A raw client sends requests and never reads. Once the transport's buffer is full,
    # the handlers' answers wait (keeping their requests in flight), the server stops
    # reading at the bound, and the client's writes stall: the server buffers little.
    # Reading at last, the client gets every answer.
    server_side: asyncio.Future[session_asyncio.Session] = asyncio.get_running_loop().create_future()

    async def on_session(session: session_asyncio.Session) -> None:
        session.on_request(echo, _echo)
        server_side.set_result(session)

    payload = "x" * 16384
    async with running(on_session, config=Config(max_incoming_requests=4, keepalive_interval=None)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(UPGRADE)
        await reader.readuntil(b"\r\n\r\n")
        peer = await server_side
        sent = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                while sent < 4000:  # 64 MB of answers: far more than any socket buffer
                    message = f'{{"type":"request","id":{sent},"method":"echo","data":"{payload}"}}'
                    writer.write(masked_frame(0x1, message.encode()))
                    sent += 1
                    await writer.drain()
        assert 0 < sent < 4000
        assert peer._transport is not None and not peer._transport.is_reading()
        assert peer._transport.get_write_buffer_size() < 10 * len(payload)
        received = bytearray()
        async with asyncio.timeout(5):
            while received.count(b'{"type":"response"') < sent:
                received += await reader.read(1 << 20)
        assert received.count(f'"result":"{payload}"}}'.encode()) == sent
        writer.close()
        await writer.wait_closed()


async def _echo(data: Any) -> Any:
    return data


async def test_a_lone_send_is_written_at_once_and_a_fan_out_in_one_write() -> None:
    # A request or a notification alone goes out in the call (no turn of the loop to wait);
    # what `notify_nowait` sends (the hub's fan-out) waits for the rest of the turn.
    counts: list[int] = []
    done = asyncio.Event()
    note = Method("note", request=int, response=None, error=None)

    async def on_session(session: session_asyncio.Session) -> None:
        transport = session._transport
        assert transport is not None
        counting = _CountingTransport(transport)
        session._transport = counting  # type: ignore[assignment]
        await session.notify(note, 0)
        counts.append(counting.writes)  # 1: written before `notify` returned
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # a new turn: the next send would be its first
        for i in range(1, 4):
            assert session.notify_nowait(note, i)
        counts.append(counting.writes)  # still 1: the three wait for the end of the turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        counts.append(counting.writes)  # 2: the three in one write
        session._transport = transport
        done.set()

    received: list[int] = []
    async with running(on_session) as server, session_asyncio.connect(url_of(server)) as session:

        @session.on_notification(note)
        async def _note(value: int) -> None:
            received.append(value)

        await done.wait()
        while len(received) < 4:
            await asyncio.sleep(0.01)
    assert counts == [1, 1, 2]
    assert received == [0, 1, 2, 3]


class _CountingTransport:
    """A transport that counts its writes (uvloop's cannot be patched in place)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
