"""`Session`: one session over asyncio, driving a `session_core.Connection`.

The protocol is the connection's, and what is decided about it (how events are acted on,
requests, pings, the handshake, handler dispatch) is `session_core.driver.SessionDriver`'s.
This module moves bytes between the connection and an `asyncio.Transport`, wakes the tasks
that wait on it and schedules its timer. After every input or call the driver pumps: it
acts on the events, then `_flush` writes `data_to_send()` in one `transport.write`, closes
the transport when the connection says so and pauses or resumes reading, and the timer is
re-armed from `get_timer()`.

Calls made from tasks (`request`, `notify`, a handler's answer): the first of a turn of the
loop is written at once (so one message in flight waits for no other turn), and it schedules
one pump for the next turn, which writes what the other tasks of this turn send in a single
write (a busy session writes about twice per turn, not once per message). Once 4 KiB wait,
the pump runs at once, so that write flow control still bounds a task that sends in a loop
without yielding.

Handlers are registered on an open session, but a peer may send its first messages in the
same read as the handshake (the 101 and a `welcome` notification, say). The connection is
built with `wait_for_start`: it holds every message after the handshake, and the session
reads nothing more, until `Connection.start()`, which the session calls once the user had
one turn of the loop to register handlers (the `async with connect(...)` body, or
`on_session`, up to its first `await`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, cast

from session_core import CloseCode, Connection, State
from session_core import driver as _driver
from session_core.driver import NotificationHandler, RequestHandler, SessionDriver, UpgradeHook

__all__ = ["NotificationHandler", "RequestHandler", "Session", "UpgradeHook"]

logger = logging.getLogger("session_asyncio")

# How many bytes sent from tasks may wait for the scheduled pump before one is forced.
# Small enough that a burst of answers starts to go out while the rest are still being
# made, so that the peer works on the first ones meanwhile instead of both sides taking
# turns (4 KiB measured best with 100 requests in flight: about 1.7x the throughput of
# 64 KiB in `python -m benchmarks.e2e --impl session_asyncio --scenario inflight100`);
# large enough to coalesce small messages into few writes. It also bounds what bypasses
# write flow control when a task sends in a loop without yielding.
_MAX_UNFLUSHED = 4 * 1024
# Grace for the transport to flush its last bytes after we closed it, when the connection
# has no close timeout of its own.
_DEFAULT_ABORT_DELAY = 10.0


class _Protocol(asyncio.Protocol):
    """The `asyncio.Protocol` of a session: forwards every callback to it."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only look alike.
        self._session._connection_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self._session._data_received(data)

    def eof_received(self) -> None:
        self._session._eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._session._connection_lost()

    def pause_writing(self) -> None:
        self._session._write_paused = True

    def resume_writing(self) -> None:
        self._session._write_paused = False
        self._session._wake_writers()


class Session(SessionDriver["asyncio.Future[Any]", "asyncio.Task[Any]"]):
    """One end of a session: send requests and notifications, serve the peer's.

    Sessions come from `session_asyncio.connect()` (client) and from the `on_session`
    callback of `session_asyncio.serve()` (server); do not build one yourself. Both ends
    are equal: each can call the other's methods.

    Register handlers before the first `await` after the session is handed to you (in the
    `async with connect(...)` body, or at the top of `on_session`): the session holds what
    the peer sends until then, so that no early message misses its handler.

    Closing: leave `async with session`, or call `close()`. When the session ends, every
    `request()` still waiting fails at once with `SessionClosed` and the request handlers
    are cancelled; the notifications received before the end still reach their handlers,
    for at most `TEARDOWN_GRACE` seconds.
    """

    _logger: ClassVar[logging.Logger] = logger

    def __init__(
        self,
        conn: Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        on_upgrade: UpgradeHook | None = None,
        on_made: Callable[[Session], None] | None = None,
        on_finished: Callable[[Session], None] | None = None,
    ) -> None:
        """Wrap `conn` (used by `connect()` and `serve()`, not by users)."""
        super().__init__(conn, upgrade_hook=on_upgrade)
        self._loop = loop
        self._protocol = _Protocol(self)
        self._transport: asyncio.Transport | None = None
        self._on_made = on_made
        self._on_finished = on_finished
        # The session's tasks (handlers, the notifier, the upgrade hook).
        self._tasks: set[asyncio.Task[Any]] = set()
        self._notifier: asyncio.Task[Any] | None = None
        self._lost: asyncio.Future[None] = loop.create_future()
        # Transport state.
        self._can_write = False
        self._write_paused = False
        self._writers: list[asyncio.Future[None]] = []
        self._reading_paused = False
        self._eof_written = False
        self._abort_handle: asyncio.TimerHandle | None = None
        # The pump.
        self._flush_scheduled = False
        self._unflushed: list[bytes] = []
        self._unflushed_size = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- the driver's primitives -----------------------------------------------------

    def _now(self) -> float:
        return self._loop.time()

    def _clock(self) -> float:
        # perf_counter, not loop.time(): uvloop's clock ticks in milliseconds.
        return time.perf_counter()

    def _new_waiter(self) -> asyncio.Future[Any]:
        return self._loop.create_future()

    def _park(self, waiter: asyncio.Future[Any]) -> Awaitable[Any]:
        return waiter

    def _wake(self, waiter: asyncio.Future[Any], value: Any) -> None:
        if not waiter.done():
            waiter.set_result(value)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        if not task.done():  # an eager task factory may have run it to its end already
            self._tasks.add(task)
            # A callback, not a `finally` in the coroutine: a task cancelled before its
            # first step never runs its coroutine.
            task.add_done_callback(self._task_done)
        return task

    def _spawn_notifier(self, coro: Coroutine[Any, Any, None]) -> None:
        self._notifier = self._spawn(coro)

    def _cancel(self, handle: asyncio.Task[Any]) -> None:
        handle.cancel()

    def _sent(self) -> None:
        """A task gave the connection something to send: the first of a turn is written at
        once, the rest on the next turn of the loop, in one write.

        The bytes are taken at once, so that the pump is forced when they grow large.
        """
        if not self._flush_scheduled:
            # The first send of a turn goes out at once (one request or answer in flight
            # waits for no other turn); the pump scheduled here takes what the other tasks
            # of this turn send, in one write.
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_pump)
            self._pump()
            return
        self._sent_soon()

    def _sent_soon(self) -> None:
        """A send that is one of many (the hub's fan-out): it waits for the scheduled pump
        with the rest of this turn's, unless 4 KiB already wait."""
        data = self._conn.data_to_send()
        if data:
            self._unflushed.append(data)
            self._unflushed_size += len(data)
            if self._unflushed_size >= _MAX_UNFLUSHED:
                self._pump()
                return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_pump)

    def _arm_timer(self, deadline: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _write_blocked(self) -> bool:
        return self._write_paused

    async def _drained(self) -> None:
        while self._write_paused and self._can_write:
            future = self._loop.create_future()
            self._writers.append(future)
            await future

    async def _checkpoint(self) -> None:
        pass  # asyncio has no checkpoints: a coroutine yields only where it waits

    def _session_ended(self) -> None:
        self._wake_writers()
        self._cancel_tasks(grace=True)

    def start(self) -> None:
        """Deliver what the peer sent after the handshake, from the next turn of the loop.

        By then the user's code has run up to its first `await` and registered its handlers.
        """
        self._loop.call_soon(self._start_now)

    async def wait_closed(self) -> None:
        """Wait until the session has ended, its transport is closed and its handlers are done."""
        if not self._lost.done():
            await asyncio.wait((self._lost,))
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        if tasks:
            await asyncio.wait(tasks)

    # -- internal: commands (for connect and serve) ------------------------------------

    def _start_now(self) -> None:
        self._conn.start()
        self._pump()

    def _going_away(self) -> None:
        """Leave at once (the `connect` block raised): send a close frame with 1001, close
        the transport without waiting for the peer's, and cancel the handlers."""
        if self._conn.state is State.OPEN:
            self._conn.close(CloseCode.GOING_AWAY, "going away", now=self._loop.time())
        self._pump()
        if self._transport is not None and self._can_write:
            self._close_transport(self._transport)
        self._drop_notifications()
        self._cancel_tasks(grace=False)

    def _abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        if self._transport is not None and self._can_write:
            self._can_write = False
            self._transport.abort()
        self._conn.close(now=self._loop.time())  # ends a connection still in its handshake
        self._pump()

    def _scheduled_pump(self) -> None:
        self._flush_scheduled = False
        self._pump()

    def _wake_writers(self) -> None:
        writers, self._writers = self._writers, []
        for future in writers:
            if not future.done():
                future.set_result(None)

    def _cancel_tasks(self, *, grace: bool) -> None:
        """Stop the handlers: the session has ended, their answers would be dropped.

        With `grace`, the notifications received before the end still reach their handlers
        for `TEARDOWN_GRACE` seconds.
        """
        self._in_flight.clear()
        current = asyncio.current_task(self._loop)
        for task in self._tasks:
            if task is current:
                continue
            if grace and task is self._notifier:
                self._loop.call_later(_driver.TEARDOWN_GRACE, task.cancel)
            else:
                task.cancel()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._check_finished()

    # -- internal: output ---------------------------------------------------------------

    def _flush(self) -> None:
        """Write, close the transport when asked, pause or resume reading."""
        transport = self._transport
        if transport is None:
            return  # not connected yet: the handshake request waits in the connection
        conn = self._conn
        data = conn.data_to_send()
        if self._unflushed:
            self._unflushed.append(data)
            data = b"".join(self._unflushed)
            self._unflushed.clear()
            self._unflushed_size = 0
        if self._can_write:
            if data:
                transport.write(data)
            if conn.should_close_transport:
                if conn.lingering:
                    self._linger(transport)
                else:
                    self._close_transport(transport)
            else:
                paused = self._reading_blocked()
                if paused is not self._reading_paused:
                    self._reading_paused = paused
                    if paused:
                        transport.pause_reading()
                    else:
                        transport.resume_reading()

    def _linger(self, transport: asyncio.Transport) -> None:
        # The connection failed and sent its close frame; the peer may still be sending.
        # Closing now, with its bytes unread, would make the kernel reset the connection
        # and destroy our close frame: read on (discarding) until the connection says
        # the transport may close. Nothing more is written, so say so at once.
        if not self._eof_written:
            self._eof_written = True
            if transport.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = None
        self._timer_fired(self._loop.time() if deadline is None else max(deadline, self._loop.time()))

    def _close_transport(self, transport: asyncio.Transport) -> None:
        self._can_write = False
        transport.close()
        # close() waits for the write buffer to drain: a peer that reads nothing could hold
        # the transport open forever.
        delay = self._conn.config.close_timeout or _DEFAULT_ABORT_DELAY
        self._abort_handle = self._loop.call_later(delay, transport.abort)

    # -- internal: transport callbacks ----------------------------------------------------

    def _connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._can_write = True
        self._remote_address = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Both asyncio and uvloop set it already; make sure (the protocol asks for it).
            with contextlib.suppress(OSError, AttributeError):  # exotic transports
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._on_made is not None:
            self._on_made(self)
        self._pump()

    def _data_received(self, data: bytes) -> None:
        self._conn.receive_data(data, self._loop.time())
        self._pump()

    def _eof_received(self) -> None:
        self._conn.receive_eof()
        self._pump()

    def _connection_lost(self) -> None:
        self._can_write = False
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        self._conn.receive_eof()
        self._pump()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._wake_writers()
        if not self._lost.done():
            self._lost.set_result(None)
        self._check_finished()

    def _check_finished(self) -> None:
        # Tell the server once the transport is gone and every task has ended.
        if self._on_finished is not None and not self._tasks and self._lost.done():
            on_finished, self._on_finished = self._on_finished, None
            on_finished(self)
