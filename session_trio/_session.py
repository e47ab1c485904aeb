"""`Session`: one session over a trio stream, driving a `session_core.Connection`.

The protocol is the connection's, and what is decided about it (how events are acted on,
requests, pings, the handshake, handler dispatch) is `session_core.driver.SessionDriver`'s.
This module moves bytes, wakes tasks and schedules the timer. A session runs three tasks,
in a nursery of its own:

- the reader feeds what it reads (64 KiB at a time) to the connection, then pumps; it
  stops reading while the driver says reading is blocked (TCP back-pressure);
- the writer writes what the pumps collected, one write per batch, and closes the
  transport when the connection says so. A write is shielded, so a cancellation never
  tears a frame; it is bounded (`TEARDOWN_GRACE`) only once the session is being torn
  down or the connection is over;
- the timer task sleeps until `Connection.get_timer()` in a cancel scope whose deadline
  every pump moves, and calls `handle_timer`.

Handlers run in the same nursery: each request's in a task of its own, and notifications
one at a time, in arrival order, in one task that runs while any wait. When the connection
is over, the request handlers are cancelled (their answers can no longer go out), while
the notifications received before the end still reach their handlers, for at most
`TEARDOWN_GRACE`.

On plain sockets (not TLS) two shortcuts save trio scheduling steps, which dominate the
cost of a small message: a pump writes its bytes at once, synchronously and without
blocking, when the writer is idle (the writer task gets only what the socket refused), and
the reader reads the file descriptor directly after `wait_readable`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Coroutine
from typing import Any, ClassVar

import outcome
import trio

from session_core import CloseCode, Connection, State
from session_core import driver as _driver
from session_core.driver import SessionDriver, UpgradeHook

from ._tasks import after_first_step

logger = logging.getLogger("session_trio")

#: How much to read at once.
READ_SIZE = 64 * 1024


class _Waiter:
    """A task parked until the driver wakes it (`task` is `None` once it gave up or woke)."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task: trio.lowlevel.Task | None = trio.lowlevel.current_task()


class Session(SessionDriver[_Waiter, trio.CancelScope]):
    """One end of a session: make requests, send notifications, serve methods.

    Sessions come from `session_trio.connect` (client) and `session_trio.serve` (server);
    do not build one yourself. Register handlers with `on_request` and `on_notification`
    before your first `await` on a new session: the session processes no message before
    that, so nothing that arrives first is missed.

    Closing: leave `async with session`, or call `close()`. When the session ends, every
    `request()` still waiting fails at once with `SessionClosed` and the request handlers
    are cancelled; the notifications received before the end still reach their handlers,
    for at most `TEARDOWN_GRACE` seconds.
    """

    _logger: ClassVar[logging.Logger] = logger
    _answer_cancelled: ClassVar[bool] = False

    def __init__(
        self,
        conn: Connection,
        stream: trio.abc.Stream,
        remote_address: Any,
        *,
        upgrade_hook: UpgradeHook | None = None,
    ) -> None:
        """Wrap `conn` over `stream` (used by `connect()` and `serve()`, not by users)."""
        super().__init__(conn, remote_address=remote_address, upgrade_hook=upgrade_hook)
        self._stream = stream
        # Plain sockets are read and written through their file descriptor (see `_receive`
        # and `_flush`); TLS and other streams through the stream's own methods.
        self._fd: int | None = None
        if isinstance(stream, trio.SocketStream) and os.name == "posix":
            self._fd = stream.socket.fileno()
        self._nursery: trio.Nursery | None = None
        self._notify_scope: trio.CancelScope | None = None
        # The writer.
        self._outbox: list[bytes] = []
        self._write_lot = trio.lowlevel.ParkingLot()
        self._drain_lot = trio.lowlevel.ParkingLot()
        self._write_scope: trio.CancelScope | None = None
        self._broken = False
        self._transport_closed = False
        # The reader.
        self._read_lot = trio.lowlevel.ParkingLot()
        self._reading = trio.Event()
        # The timer.
        self._timer_scope = trio.CancelScope()
        # The end.
        self._teardown_deadline = math.inf  # set once the session's tasks are being ended
        self._closed = trio.Event()  # the transport is closed and every task has ended

    # -- the driver's primitives -----------------------------------------------------

    def _now(self) -> float:
        return trio.current_time()

    def _new_waiter(self) -> _Waiter:
        return _Waiter()

    def _park(self, waiter: _Waiter) -> Awaitable[Any]:
        def abort(_: Any) -> trio.lowlevel.Abort:
            # Runs synchronously when the task is cancelled: no wake may follow.
            waiter.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        return trio.lowlevel.wait_task_rescheduled(abort)

    def _wake(self, waiter: _Waiter, value: Any) -> None:
        task, waiter.task = waiter.task, None
        if task is not None:
            trio.lowlevel.reschedule(task, outcome.Value(value))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> trio.CancelScope:
        # The scope exists before the task starts, so that a `$/cancel` arriving in the
        # same read cancels the handler before it runs.
        assert self._nursery is not None  # messages arrive only while the tasks run
        scope = trio.CancelScope()
        self._nursery.start_soon(self._in_scope, scope, coro)
        return scope

    @staticmethod
    async def _in_scope(scope: trio.CancelScope, coro: Coroutine[Any, Any, None]) -> None:
        with scope:
            await coro

    def _spawn_notifier(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._notifier, coro)

    async def _notifier(self, coro: Coroutine[Any, Any, None]) -> None:
        # Shielded: when the session's tasks are ended, the notifications received before
        # still reach their handlers, until the teardown deadline (see `_timer_loop`).
        try:
            with trio.CancelScope(shield=True, deadline=self._teardown_deadline) as self._notify_scope:
                await coro
        finally:
            self._notify_scope = None

    def _cancel(self, handle: trio.CancelScope) -> None:
        handle.cancel()

    def _arm_timer(self, deadline: float | None) -> None:
        self._timer_scope.deadline = math.inf if deadline is None else deadline

    def _write_blocked(self) -> bool:
        return self._write_scope is not None

    async def _drained(self) -> None:
        while self._write_scope is not None:
            await self._drain_lot.park()

    async def _checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    async def _begin(self, coro: Coroutine[Any, Any, object]) -> object:
        # trio may run the reader before the user's task: deliver nothing until the user's
        # code first yields (by then it registered its handlers), whatever the order.
        return await after_first_step(coro, self.start)

    def start(self) -> None:
        """Let the reader deliver messages: the user has had the chance to add handlers.

        The reader calls `Connection.start()` when it next runs. For a client, that is
        after the body of `async with connect(...)` first yields to trio; a server calls
        this once `on_session`'s first step is over.
        """
        self._reading.set()

    async def wait_closed(self) -> None:
        """Wait until the session has ended, its transport is closed and its handlers are done.

        Called from one of the session's own handlers (which cannot wait for itself), it
        waits for the end of the connection only.
        """
        nursery = self._nursery
        if nursery is not None and trio.lowlevel.current_task().parent_nursery is nursery:
            while not self._transport_closed:  # `_close_transport` unparks the drain lot
                await self._drain_lot.park()
        else:
            await self._closed.wait()

    # -- running (for connect and serve) ---------------------------------------------

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the session's tasks until its connection is closed, then tidy up.

        When cancelled while open (server shutdown, a client leaving `connect` with an
        exception), it sends a close frame with 1001 on a best-effort basis.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._pump()  # a client's upgrade request is waiting, and the first timer
                nursery.start_soon(self._read_loop)
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._timer_loop)
                task_status.started()
        finally:
            self._nursery = None
            try:
                await self._finish()
            finally:
                self._closed.set()  # the transport is closed and every handler is done

    # -- output ----------------------------------------------------------------------

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data:
            fd = self._fd
            if fd is not None and not (self._outbox or self._write_scope or self._transport_closed):
                # Fast path: the writer is idle, so write now what the socket takes without
                # blocking, and leave only the rest to the writer task. Nothing is ever
                # half-written by a cancellation: this write is synchronous.
                try:
                    sent = os.write(fd, data)
                except OSError:  # would block, or broken: the writer's send_all tells which
                    sent = 0
                data = data[sent:]
            if data:
                self._outbox.append(data)
                self._write_lot.unpark_all()
        if self._conn.should_close_transport:
            # The connection is over: a write still blocked (the peer reads no more) gets a
            # short grace, not forever.
            scope = self._write_scope
            if scope is not None and scope.deadline == math.inf:
                scope.deadline = trio.current_time() + _driver.TEARDOWN_GRACE
            self._write_lot.unpark_all()
        if self._read_lot and not self._reading_blocked():
            self._read_lot.unpark_all()

    # -- the tasks -------------------------------------------------------------------

    async def _receive(self) -> bytes:
        fd = self._fd
        if fd is None:
            data = await self._stream.receive_some(READ_SIZE)
            return data if type(data) is bytes else bytes(data)
        # Fast path for plain sockets: `receive_some` adds a schedule point after every
        # successful read; here a read that had to wait returns at once, and one that did
        # not wait yields once (so that a flooding peer cannot starve other tasks).
        waited = False
        while True:
            if self._transport_closed:  # the fd number may belong to another file by now
                raise trio.ClosedResourceError
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                waited = True
                continue
            except OSError as exc:
                raise trio.BrokenResourceError from exc
            if not waited:
                await trio.lowlevel.checkpoint()
            return data

    async def _read_loop(self) -> None:
        conn = self._conn
        try:
            while conn.state is State.HANDSHAKING:
                data = await self._receive()
                if not data:
                    conn.receive_eof()
                    self._pump()
                    return
                conn.receive_data(data, trio.current_time())
                self._pump()
            if conn.state is not State.OPEN and conn.state is not State.UPGRADE_REQUESTED:
                return
            # The connection holds what followed the handshake (`wait_for_start`) until the
            # user has had the chance to register handlers; meanwhile nothing is read.
            await self._reading.wait()
            conn.start()
            self._pump()
            while not self.closed:
                if self._reading_blocked():
                    # Back-pressure: the peer's requests in flight, or the notifications
                    # waiting, are at their bound. An answer, or the delivery of a
                    # notification, unparks us when there is room.
                    await self._read_lot.park()
                    continue
                data = await self._receive()
                if not data:
                    conn.receive_eof()
                    self._pump()
                    return
                conn.receive_data(data, trio.current_time())
                self._pump()
        except trio.ClosedResourceError:
            pass  # the writer closed the transport
        except (trio.BrokenResourceError, OSError):
            conn.receive_eof()
            self._pump()

    async def _write_loop(self) -> None:
        conn, stream, outbox = self._conn, self._stream, self._outbox
        while not self._broken:
            if outbox:
                # Once the session is cancelled, `_finish` writes what is left.
                await trio.lowlevel.checkpoint_if_cancelled()
                data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                outbox.clear()
                await self._send(stream, data)
                self._drain_lot.unpark_all()
            elif conn.should_close_transport:
                break
            else:
                await self._write_lot.park()
        await self._close_transport()
        # The connection is over: end the reader, the timer and the handlers.
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _send(self, stream: trio.abc.Stream, data: bytes) -> None:
        # Shielded: a torn frame would corrupt the stream for the close frame that follows.
        # Only `_timer_loop`, when the session is torn down, bounds it.
        with trio.CancelScope(shield=True) as scope:
            self._write_scope = scope
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self._broken = True
        self._write_scope = None
        if scope.cancelled_caught:
            self._broken = True
        if self._broken:
            self._conn.receive_eof()
            self._pump()

    async def _timer_loop(self) -> None:
        try:
            while True:
                deadline = self._timer_at
                with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
                    self._timer_scope = scope
                    await trio.sleep_forever()
                # trio never fires a deadline early, so the current time is at or after it.
                self._timer_fired(trio.current_time())
        finally:
            # Reached only when the session's tasks are being ended (the connection is over,
            # or the session is cancelled): bound a write in progress, and the delivery of
            # the notifications received before the end.
            self._teardown_deadline = trio.current_time() + _driver.TEARDOWN_GRACE
            for shielded in (self._write_scope, self._notify_scope):
                if shielded is not None:
                    shielded.deadline = min(shielded.deadline, self._teardown_deadline)

    async def _close_transport(self) -> None:
        if not self._transport_closed:
            self._transport_closed = True
            with trio.move_on_after(_driver.TEARDOWN_GRACE, shield=True) as scope:
                await self._stream.aclose()
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self._stream)
        self._drain_lot.unpark_all()
        if self._conn.state is not State.CLOSED:
            self._conn.receive_eof()
            self._pump()

    async def _finish(self) -> None:
        # The tasks are gone. If the session was cancelled while open, say goodbye with
        # 1001 (best effort, bounded), then close the transport.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _driver.TEARDOWN_GRACE):
            if not self._transport_closed and not self._broken:
                if self._conn.state is State.OPEN:
                    self._conn.close(CloseCode.GOING_AWAY, "going away", now=trio.current_time())
                self._pump()
                if self._outbox:
                    data = b"".join(self._outbox)
                    self._outbox.clear()
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        await self._stream.send_all(data)
            await self._close_transport()


def peer_address(stream: trio.abc.Stream) -> Any:
    """The peer's socket address under `stream` (through TLS), or `None`."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        try:
            return stream.socket.getpeername()
        except OSError:
            return None
    return None
