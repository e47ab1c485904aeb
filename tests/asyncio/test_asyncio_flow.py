"""Back-pressure both ways: the bound on handlers in flight, and write flow control."""

from __future__ import annotations

import asyncio
import socket

import session_asyncio
from session_core import Config, Method

from .support import AddArgs, add, running, url_of

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

        await asyncio.sleep(0)  # the held input is released: now stop reading for a while
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
