"""Faults: connections dropped mid-handshake, mid-frame and mid-request (FIN and RST, on
either side), handlers that raise, hang past a timeout or are cancelled, and a server
shutting down with requests in flight.

Each waiting caller learns the outcome at once (`SessionClosed`, `TimeoutError`, the
error answer), and no task or file descriptor outlives the scenario.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from session_core import (
    Config,
    HandshakeError,
    InternalError,
    Method,
    SessionClosed,
)
from tests.methods import echo

from .support import (
    ADAPTERS,
    TEXT,
    AnySession,
    Backend,
    RawPeer,
    RawServer,
    accept_response,
    client_frame,
    fd_count,
    partial,
    server_frame,
    upgrade_request,
)

hang = Method("hang", request=float, response=float, error=str)
crash = Method("crash", request=str, response=None, error=str)

#: How long "at once" may take on a loaded machine. Typically milliseconds.
PROMPT = 5.0
HOW = ["fin", "rst"]


class Handlers:
    """Server handlers that count how often they started and were cancelled."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.started = 0
        self.cancelled = 0
        self.first_started = threading.Event()
        self.close_codes: list[int | None] = []
        self.sessions: list[AnySession] = []

    async def on_session(self, session: AnySession) -> None:
        self.sessions.append(session)
        session.on_request(echo, self._echo)
        session.on_request(hang, self._hang)
        session.on_request(crash, self._crash)
        await session.wait_closed()
        self.close_codes.append(session.close_code)

    async def _echo(self, data: Any) -> Any:
        return data

    async def _hang(self, seconds: float) -> float:
        self.started += 1
        self.first_started.set()
        try:
            await self.backend.sleep(seconds)
        except BaseException as exc:
            if self.backend.is_cancellation(exc):
                self.cancelled += 1
            raise
        return seconds

    async def _crash(self, text: str) -> None:
        raise ValueError(f"the handler failed on {text}")


def _request_frame(request_id: int, method: str, data: Any) -> bytes:
    text = json.dumps({"type": "request", "id": request_id, "method": method, "data": data})
    return client_frame(TEXT, text.encode())


def _drop(peer: RawPeer, how: str) -> None:
    if how == "rst":
        peer.reset()
    else:
        peer.close()


# -- the client's connection drops (our server) ------------------------------------------


def _client_drops(port: int, kind: str, how: str, handlers: Handlers) -> None:
    peer = RawPeer.connect(port)
    try:
        if kind == "mid-handshake":
            peer.sock.sendall(upgrade_request(port)[:40])
            time.sleep(0.1)  # the server has read it
        else:
            assert b" 101 " in peer.handshake(port)
            request = _request_frame(1, "hang", 60.0)
            if kind == "mid-frame":
                peer.sock.sendall(request[: len(request) // 2])
                time.sleep(0.1)
            else:
                handlers.first_started.clear()
                peer.sock.sendall(request)
                assert handlers.first_started.wait(PROMPT), "the handler never started"
    finally:
        _drop(peer, how)


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_a_client_dropping_its_connection_at_any_point_leaves_nothing_behind(backend: Backend) -> None:
    async def main() -> None:
        handlers = Handlers(backend)
        async with backend.serve(handlers.on_session) as server:
            fds, tasks = fd_count(), backend.task_count()
            for kind in ("mid-handshake", "mid-frame", "mid-request"):
                for how in HOW:
                    sessions, cancelled = len(handlers.close_codes), handlers.cancelled
                    await backend.to_thread(lambda: _client_drops(server.port, kind, how, handlers))  # noqa: B023
                    dropped = time.monotonic()
                    if kind != "mid-handshake":
                        # The session ends as lost (1006), and a running handler is cancelled.
                        ended = await backend.eventually(
                            lambda: len(handlers.close_codes) > sessions,  # noqa: B023
                            PROMPT,
                        )
                        assert ended, f"{kind}/{how}: the session did not end"
                        assert handlers.close_codes[-1] == 1006, (kind, how)
                    if kind == "mid-request":
                        assert handlers.cancelled == cancelled + 1, f"{how}: the handler was not cancelled"
                    assert time.monotonic() - dropped < PROMPT
                    await backend.check_no_leaks(fds, tasks)
            assert handlers.started == 2

    backend.run(main)


# -- the server's connection drops (our client) ------------------------------------------


def _raw_server(kind: str, how: str, requests: int) -> Any:
    def behaviour(peer: RawPeer) -> None:
        request = peer.read_head()
        if kind == "mid-handshake":
            peer.sock.sendall(accept_response(request)[:30])
            time.sleep(0.1)
        else:
            peer.sock.sendall(accept_response(request))
            for _ in range(requests):  # every request is in flight
                item = peer.recv_frame()
                assert item is not None and item[0] == TEXT
            if kind == "mid-frame":
                answer = server_frame(TEXT, b'{"type":"response","id":1,"result":"never whole"}')
                peer.sock.sendall(answer[:20])
                time.sleep(0.1)
        _drop(peer, how)

    return behaviour


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_the_server_dropping_the_connection_fails_every_waiting_caller_at_once(
    backend: Backend, how: str
) -> None:
    async def main() -> None:
        fds, tasks = fd_count(), backend.task_count()
        # Mid-handshake: connect fails with HandshakeError, at once.
        with RawServer(_raw_server("mid-handshake", how, 0)) as raw:
            started = time.monotonic()
            with pytest.raises(HandshakeError):
                async with backend.connect(raw.url, connect_timeout=30.0):
                    pass
            assert time.monotonic() - started < PROMPT
        assert not raw.errors, raw.errors
        # Mid-request and mid-frame: five requests in flight all fail with SessionClosed.
        for kind in ("mid-request", "mid-frame"):
            with RawServer(_raw_server(kind, how, 5)) as raw:
                async with backend.connect(raw.url) as session:
                    started = time.monotonic()
                    outcomes = await backend.gather(
                        *[partial(session.request, echo, n, timeout=60.0) for n in range(5)]
                    )
                    elapsed = time.monotonic() - started
                print(f"{backend} {kind}/{how}: 5 waiting callers failed after {elapsed * 1000:.0f} ms")
                assert all(isinstance(o, SessionClosed) and o.code == 1006 for o in outcomes), outcomes
                assert elapsed < PROMPT, f"{kind}: the callers learned it after {elapsed:.1f} s"
                assert session.close_code == 1006
            assert not raw.errors, raw.errors
        await backend.check_no_leaks(fds, tasks)

    backend.run(main)


# -- handlers that fail ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_handlers_that_raise_hang_or_are_cancelled(backend: Backend) -> None:
    async def main() -> None:
        handlers = Handlers(backend)
        fds, tasks = fd_count(), backend.task_count()
        async with backend.serve(handlers.on_session) as server, backend.connect(server.url) as session:
            # Raises: answered -32603 at once, and the session goes on.
            with pytest.raises(InternalError):
                await backend.within(PROMPT, lambda: session.request(crash, "x"))
            # Hangs past the caller's timeout: TimeoutError, the handler is cancelled.
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await session.request(hang, 60.0, timeout=0.3)
            assert 0.3 - 0.05 <= time.monotonic() - started < PROMPT
            assert await backend.eventually(lambda: handlers.cancelled == 1, PROMPT)
            # The caller is cancelled: the handler is cancelled too.
            assert await backend.cancel_after(0.3, lambda: session.request(hang, 60.0))
            assert await backend.eventually(lambda: handlers.cancelled == 2, PROMPT)
            # Many at once, on a loaded session.
            outcomes = await backend.gather(
                *[lambda: session.request(hang, 60.0, timeout=0.5) for _ in range(50)],
                *[lambda: session.request(crash, "x") for _ in range(50)],
                *[partial(session.request, echo, n) for n in range(50)],
            )
            assert all(isinstance(o, TimeoutError) for o in outcomes[:50]), outcomes[:50]
            assert all(isinstance(o, InternalError) for o in outcomes[50:100]), outcomes[50:100]
            assert outcomes[100:] == list(range(50))
            assert await backend.eventually(lambda: handlers.cancelled == 52, PROMPT)
            # The session still works.
            assert await session.request(echo, "still here") == "still here"
        assert handlers.started == 52
        await backend.check_no_leaks(fds, tasks)

    backend.run(main)


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_the_server_closing_a_session_fails_its_callers_and_cancels_its_handlers(backend: Backend) -> None:
    async def main() -> None:
        handlers = Handlers(backend)
        fds, tasks = fd_count(), backend.task_count()
        async with backend.serve(handlers.on_session) as server, backend.connect(server.url) as session:

            async def close_when_busy() -> None:
                assert await backend.eventually(lambda: handlers.started == 10, PROMPT)
                await handlers.sessions[0].close(4000, "maintenance")

            started = time.monotonic()
            outcomes = await backend.gather(
                *[lambda: session.request(hang, 60.0) for _ in range(10)], close_when_busy
            )
            assert time.monotonic() - started < 2 * PROMPT
            assert outcomes[-1] is None
            assert all(isinstance(o, SessionClosed) and o.code == 4000 for o in outcomes[:10]), outcomes
            assert await backend.eventually(lambda: handlers.cancelled == 10, PROMPT)
            assert session.close_code == 4000
        await backend.check_no_leaks(fds, tasks)

    backend.run(main)


@pytest.mark.parametrize("backend", ADAPTERS, ids=str)
def test_server_shutdown_with_requests_in_flight(backend: Backend) -> None:
    sessions, per_session = 20, 5

    async def main() -> None:
        handlers = Handlers(backend)
        fds, tasks = fd_count(), backend.task_count()
        async with backend.serve(handlers.on_session, config=Config(close_timeout=2.0)) as server:

            async def client() -> tuple[list[Any], int | None]:
                async with backend.connect(server.url) as session:
                    outcomes = await backend.gather(
                        *[lambda: session.request(hang, 60.0) for _ in range(per_session)]
                    )
                return outcomes, session.close_code

            async def shutdown() -> float:
                total = sessions * per_session
                assert await backend.eventually(lambda: handlers.started == total, 2 * PROMPT)
                started = time.monotonic()
                await server.shutdown()
                return time.monotonic() - started

            results = await backend.gather(*[client for _ in range(sessions)], shutdown)
        shutdown_took = results[-1]
        assert isinstance(shutdown_took, float), shutdown_took
        print(
            f"{backend}: shutdown with {sessions * per_session} requests in flight took {shutdown_took:.3f} s"
        )
        assert shutdown_took < 2 * PROMPT
        for result in results[:-1]:
            assert isinstance(result, tuple), result
            outcomes, code = result
            assert all(isinstance(o, SessionClosed) and o.code == 1001 for o in outcomes), outcomes
            assert code == 1001
        assert handlers.cancelled == sessions * per_session
        await backend.check_no_leaks(fds, tasks)

    backend.run(main)
