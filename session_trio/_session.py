"""`Session`: one session over a trio stream, driving a `session_core.Connection`.

The protocol is the connection's, and what is decided about it (how events are acted on,
requests, pings, the handshake, handler dispatch) is `session_core.driver.SessionDriver`'s.
This module moves bytes, wakes tasks and schedules the timer.

An idle session is one task and no nursery of its own: tasks, nurseries, cancel scopes
and parking lots are what a trio session's memory goes to, and a server holds thousands
of idle sessions.

- The session's task (`_run`, one coroutine) reads (64 KiB at a time), feeds the
  connection and pumps. The connection's timer is the deadline of the cancel scope it
  reads in (every pump moves it), so no task sleeps for it: when it expires, the task
  leaves the scope and calls `handle_timer`. Before `start()`, and while the driver says
  reading is blocked (TCP back-pressure), it waits in the same scope without reading,
  until `start()` or a pump wakes it. When the connection is over it is woken by the
  cancellation of its scope, closes the transport and ends the handlers.
- A writer task exists only while a write waits for the socket. A write is shielded, so a
  cancellation never tears a frame; it is bounded (`TEARDOWN_GRACE`) only once the
  connection is over or the session is torn down.
- Handlers run in tasks of the nursery the session's task runs in (the server's, or the
  one `connect` opens), each in a cancel scope of the session's: each request's in a task
  of its own, and notifications one at a time, in arrival order, in one task that runs
  while any wait. When the connection is over, the request handlers are cancelled (their
  answers can no longer go out), while the notifications received before the end still
  reach their handlers, for at most `TEARDOWN_GRACE`; the session ends when they are done.
  A cancellation of the session's task (server shutdown) is a cancellation of that
  nursery, which reaches them too.

On plain sockets (not TLS) two shortcuts save trio scheduling steps, which dominate the
cost of a small message: a pump writes its bytes at once, synchronously and without
blocking, when no write waits (a writer task gets only what the socket refused), and the
session reads the file descriptor directly after `wait_readable`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
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


def _read_nowait(fd: int) -> bytes | None:
    """What the socket holds (`b""` at its end, or when it failed), or `None` if nothing yet.

    A function of its own, so that the `BlockingIOError` of every wait for input goes
    through no frame but this one: a traceback through a coroutine's frame makes CPython
    give it a frame object, which then lives (some 300 bytes) as long as the coroutine.
    """
    try:
        return os.read(fd, READ_SIZE)
    except BlockingIOError:
        return None
    except OSError:  # reset: the end of the stream, as far as the connection is concerned
        return b""


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

    # Slots: with the driver's, these attributes would overflow the instance dict's shared
    # keys (a private dict per session, over a kilobyte more each).
    __slots__ = (
        "_aborted",
        "_broken",
        "_children",
        "_conn_started",
        "_done",
        "_done_event",
        "_drain_lot",
        "_eof",
        "_fd",
        "_idle_waiter",
        "_live",
        "_main_scope",
        "_notify_scope",
        "_nursery",
        "_outbox",
        "_reaper",
        "_started",
        "_stream",
        "_teardown_deadline",
        "_transport_closed",
        "_write_scope",
        "_write_shut",
        "_writing",
    )

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
        # Plain sockets are read and written through their file descriptor (see `_run`
        # and `_flush`); TLS and other streams through the stream's own methods.
        self._fd: int | None = None
        if isinstance(stream, trio.SocketStream) and os.name == "posix":
            self._fd = stream.socket.fileno()
        # Whatever is not needed while idle (a parking lot, an event, a table of tasks) is
        # made on first use.
        # The tasks of the session, in the nursery its own task runs in: how many have
        # not ended, and the running ones with the scope that cancels them at the end
        # (`None`: the notifications and the writer, which are bounded instead).
        self._nursery: trio.Nursery | None = None
        self._live = 0
        self._children: dict[trio.lowlevel.Task, trio.CancelScope | None] | None = None
        self._reaper: _Waiter | None = None  # the session's task, waiting for them at the end
        self._notify_scope: trio.CancelScope | None = None
        # The writes: what the socket refused, and whether a writer task sends it.
        self._outbox: list[bytes] = []
        self._writing = False
        self._write_scope: trio.CancelScope | None = None  # set while a write waits
        self._drain_lot: trio.lowlevel.ParkingLot | None = None  # tasks waiting for writes
        self._broken = False
        self._write_shut = False
        self._transport_closed = False
        # The session's task: the scope it reads or waits in (its deadline is the timer),
        # and where it waits without reading (back-pressure, or before `start()`).
        self._main_scope: trio.CancelScope | None = None
        self._idle_waiter: _Waiter | None = None
        self._started = False  # `start()` was called
        self._conn_started = False  # ... and the session's task told the connection
        self._eof = False
        self._aborted = False  # a task of the session failed before the session opened
        # The end.
        self._teardown_deadline = math.inf  # set once the session's tasks are being ended
        self._done = False  # the transport is closed and every task has ended
        self._done_event: trio.Event | None = None

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
        scope = trio.CancelScope()
        self._start_child(self._in_scope, scope, coro)
        return scope

    async def _in_scope(self, scope: trio.CancelScope, coro: Coroutine[Any, Any, None]) -> None:
        task = self._enter_child(scope)
        try:
            if self._teardown_deadline != math.inf:
                scope.cancel()  # started after the end: the session cancels no more
            with scope:
                await coro
        except Exception:
            self._child_failed()
        finally:
            self._leave_child(task)

    def _spawn_notifier(self, coro: Coroutine[Any, Any, None]) -> None:
        self._start_child(self._notifier, coro)

    async def _notifier(self, coro: Coroutine[Any, Any, None]) -> None:
        # Shielded: when the session's tasks are ended, the notifications received before
        # still reach their handlers, until the teardown deadline (see `_begin_teardown`).
        task = self._enter_child(None)
        try:
            with trio.CancelScope(shield=True, deadline=self._teardown_deadline) as self._notify_scope:
                await coro
        except Exception:
            self._child_failed()
        finally:
            self._notify_scope = None
            self._leave_child(task)

    def _cancel(self, handle: trio.CancelScope) -> None:
        handle.cancel()

    def _arm_timer(self, deadline: float | None) -> None:
        # The timer is the deadline of the scope the session's task reads in; between two
        # such scopes, the next one takes `_timer_at`.
        scope = self._main_scope
        if scope is not None:
            scope.deadline = math.inf if deadline is None else deadline

    def _write_blocked(self) -> bool:
        return self._write_scope is not None

    async def _drained(self) -> None:
        while self._write_scope is not None:
            await self._drain_waiters().park()

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
        if not self._started:
            self._started = True
            self._wake_main()

    async def wait_closed(self) -> None:
        """Wait until the session has ended, its transport is closed and its handlers are done.

        Called from one of the session's own handlers (which cannot wait for itself), it
        waits for the end of the connection only.
        """
        children = self._children
        if children is not None and trio.lowlevel.current_task() in children:
            while not self._transport_closed:  # `_close_transport` unparks the drain lot
                await self._drain_waiters().park()
        elif self._done:
            await trio.lowlevel.checkpoint()
        else:
            if self._done_event is None:
                self._done_event = trio.Event()
            await self._done_event.wait()

    # -- the session's tasks -----------------------------------------------------------

    def _start_child(self, async_fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        assert self._nursery is not None  # messages arrive only while the session runs
        self._live += 1
        self._nursery.start_soon(async_fn, *args)

    # Around the body of each task of the session (`try`/`finally` in each, cheaper than a
    # context manager on the path of every request): it is known (to be cancelled at the
    # end, and by `wait_closed`), and counted until it ends. The tasks run in a nursery
    # that is not the session's: an exception must not escape into it.
    def _enter_child(self, scope: trio.CancelScope | None) -> trio.lowlevel.Task:
        task = trio.lowlevel.current_task()
        children = self._children
        if children is None:
            children = self._children = {}
        children[task] = scope
        return task

    def _child_failed(self) -> None:
        logger.exception("unexpected error in a task of the session with %r", self._remote_address)
        self._fail()

    def _leave_child(self, task: trio.lowlevel.Task) -> None:
        assert self._children is not None
        del self._children[task]
        self._live -= 1
        if not self._live and self._reaper is not None:
            self._wake(self._reaper, None)

    def _fail(self) -> None:
        # A task of the session failed unexpectedly: end the session rather than hang.
        if self._conn.state is State.OPEN:
            self.close_nowait(CloseCode.INTERNAL_ERROR, "internal error")
        elif not self.closed:
            self._aborted = True
            self._wake_main(reading=True)

    # -- running (for connect and serve) ---------------------------------------------

    def _serve(self, on_open: Callable[[], Awaitable[object]]) -> Coroutine[Any, Any, None]:
        """Server: run the session in the current task, `on_open()` (what waits for the
        handshake, then runs `on_session`) in a task of the nursery the current task runs in.

        That nursery is the server's: its shutdown cancels both, as it would a task of the
        server's that held both in a nursery of their own; without that task and nursery,
        an idle session costs one task instead of two. An exception escaping `on_open` is
        logged and closes the session with 1011.
        """
        return self._run(on_open=on_open)

    async def _guarded(self, on_open: Callable[[], Awaitable[object]]) -> None:
        # In the server's nursery: an exception must not take the server down.
        try:
            await on_open()
        except Exception:
            logger.exception("unexpected error in the session with %r", self._remote_address)
            if self._conn.state is State.OPEN:
                self.close_nowait(CloseCode.INTERNAL_ERROR, "internal error")

    async def _run(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        on_open: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Run the session until its connection is closed and its tasks are done, then tidy up.

        This task reads, in a cancel scope whose deadline is the connection's timer, until
        the transport is to be closed: the scope ends when the timer expires (or to end),
        and the loop looks again at what to do. The session's other tasks (handlers, and a
        writer while a write waits) run in the nursery this task runs in, which must exist.
        When cancelled while open (server shutdown, a client leaving `connect` with an
        exception), it sends a close frame with 1001 on a best-effort basis. A served
        session (`on_open`) logs an unexpected exception instead of raising it into the
        server's nursery.

        One coroutine, awaiting no helper of its own while it waits: each coroutine an
        idle session keeps costs memory.
        """
        serving = on_open is not None
        fd = self._fd
        try:
            try:
                self._pump()  # a client's upgrade request is waiting, and the first timer
                task_status.started()
                self._enter(on_open)
                del on_open  # not kept while the session lasts
                waited = False
                while not self._over():
                    at = self._timer_at
                    with trio.CancelScope(deadline=math.inf if at is None else at) as scope:
                        self._main_scope = scope
                        try:
                            while not self._over():
                                if self._start_due():
                                    continue
                                if not self._may_read():
                                    # Until `_flush` or `start()` wakes us, or the timer.
                                    waiter = self._idle_waiter = _Waiter()
                                    try:
                                        await self._park(waiter)
                                    finally:
                                        self._idle_waiter = None
                                    del waiter
                                    continue
                                if fd is None:
                                    data = await self._receive()
                                else:
                                    # Fast path for plain sockets: `receive_some` adds a
                                    # schedule point after every successful read; here a
                                    # read that had to wait goes on at once, and one that
                                    # did not yields once (so that a flooding peer cannot
                                    # starve other tasks). Cancellation (the timer, the
                                    # end) is taken before a read, never after it: the
                                    # bytes would be lost.
                                    if not waited:
                                        await trio.lowlevel.checkpoint_if_cancelled()
                                    read = _read_nowait(fd)
                                    if read is None:
                                        await trio.lowlevel.wait_readable(fd)
                                        waited = True
                                        continue  # and look again at what to do first
                                    if not waited:
                                        await trio.lowlevel.cancel_shielded_checkpoint()
                                    waited = False
                                    data = read
                                    del read
                                self._received(data)
                                del data  # not kept while the next read waits
                        finally:
                            self._main_scope = None
                    at = self._timer_at
                    if at is not None:
                        now = trio.current_time()
                        if now >= at:  # trio never ends a scope before its deadline
                            self._timer_fired(now)
                # The connection is over: let a waiting write end (it is bounded now),
                # close the transport, then end the handlers.
                while self._writing:
                    await self._drain_waiters().park()
                await self._close_transport()
            finally:
                await self._end()
        except Exception:
            if not serving:
                raise
            logger.exception("unexpected error in the session with %r", self._remote_address)

    def _received(self, data: bytes | None) -> None:
        # Feed what was read (`b""`: the end of the stream; `None`: the stream failed or was
        # closed), then pump.
        conn = self._conn
        if data:
            conn.receive_data(data, trio.current_time())
        else:
            self._eof = True
            if data is None and self._transport_closed:
                return
            conn.receive_eof()
        self._pump()

    def _enter(self, on_open: Callable[[], Awaitable[object]] | None) -> None:
        # After `started()`: before, the task is in `nursery.start`'s own nursery.
        nursery = trio.lowlevel.current_task().parent_nursery
        if nursery is None:
            raise RuntimeError("a session runs in a task of a nursery")
        self._nursery = nursery
        if self._outbox and not self._writing:
            self._start_writer()  # what the socket refused before
        if on_open is not None:
            nursery.start_soon(self._guarded, on_open)

    async def _end(self) -> None:
        # However the session ends: cancel the handlers and wait for every task of the
        # session (the notifications and a last write are bounded by the teardown
        # deadline), then say goodbye if still open and close the transport.
        try:
            self._begin_teardown()
            with trio.CancelScope(shield=True):
                while self._live:
                    self._reaper = _Waiter()
                    try:
                        await self._park(self._reaper)
                    finally:
                        self._reaper = None
            self._nursery = None
            await self._finish()
        finally:
            self._done = True  # the transport is closed and every handler is done
            if self._done_event is not None:
                self._done_event.set()

    def _begin_teardown(self) -> None:
        # The session's tasks are being ended (the connection is over, or the session is
        # cancelled): cancel the handlers, bound a write in progress, and the delivery of
        # the notifications received before the end.
        self._teardown_deadline = trio.current_time() + _driver.TEARDOWN_GRACE
        if self._children is not None:
            for scope in self._children.values():
                if scope is not None:
                    scope.cancel()
        for shielded in (self._write_scope, self._notify_scope):
            if shielded is not None:
                shielded.deadline = min(shielded.deadline, self._teardown_deadline)

    # -- the session's task: reading and the timer -----------------------------------

    def _over(self) -> bool:
        # Time to close the transport: the connection is over, and done lingering.
        conn = self._conn
        return self._aborted or (conn.should_close_transport and not conn.lingering)

    def _may_read(self) -> bool:
        conn = self._conn
        if self._eof:
            return False
        if conn.state is State.HANDSHAKING:
            return True
        if not self._conn_started:
            # The connection holds what followed the handshake (`wait_for_start`) until the
            # user has had the chance to register handlers; meanwhile nothing is read.
            return False
        if conn.state is State.CLOSED:
            return conn.lingering  # still reading (and discarding) what comes
        # Back-pressure: the peer's requests in flight, or the notifications waiting, are
        # at their bound. An answer, or the delivery of a notification, wakes us.
        return not self._reading_blocked()

    def _start_due(self) -> bool:
        # Pass `start()` on to the connection once the handshake is over (whether it did).
        conn = self._conn
        if not self._started or self._conn_started or conn.state is State.HANDSHAKING:
            return False
        self._conn_started = True
        conn.start()
        self._pump()
        return True

    def _wake_main(self, *, reading: bool = False) -> None:
        # Wake the session's task waiting without reading; with `reading`, also one
        # waiting for input, by cancelling its scope (only to end: an exception through
        # `_run` keeps a frame object alive as long as the session, see `_read_nowait`).
        waiter = self._idle_waiter
        if waiter is not None:
            self._idle_waiter = None
            self._wake(waiter, None)
        elif reading and self._main_scope is not None:
            self._main_scope.cancel()

    async def _receive(self) -> bytes | None:
        # A read by the stream's own means (TLS), or of the socket for `_linger`: `None` if
        # the stream failed or was closed.
        fd = self._fd
        try:
            if fd is None:
                # Cancelling `receive_some` is safe once the TLS handshake is over; before,
                # the only deadline is the handshake's, which ends the connection anyway.
                data = await self._stream.receive_some(READ_SIZE)
                return data if type(data) is bytes else bytes(data)
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            while True:
                if self._transport_closed:  # the fd number may belong to another file by now
                    return None
                read = _read_nowait(fd)
                if read is None:
                    await trio.lowlevel.wait_readable(fd)
                    waited = True
                    continue
                if not waited:
                    # A schedule point that is not a cancellation point: cancelled here, the
                    # bytes just read would be lost, and the stream torn for whoever reads
                    # on (the lingering close looks for the peer's close frame in it).
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return read
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return None

    # -- output ----------------------------------------------------------------------

    def _flush(self) -> None:
        conn = self._conn
        data = conn.data_to_send()
        if data:
            fd = self._fd
            if fd is not None and not (self._outbox or self._writing or self._transport_closed):
                # Fast path: no write waits, so write now what the socket takes without
                # blocking, and leave only the rest to a writer task. Nothing is ever
                # half-written by a cancellation: this write is synchronous.
                try:
                    sent = os.write(fd, data)
                except OSError:  # would block, or broken: the writer's send_all tells which
                    sent = 0
                data = data[sent:]
            if data:
                self._outbox.append(data)
                if not self._writing and self._nursery is not None:
                    # (Without a nursery the session is not running yet, or being torn
                    # down: `_run` starts the writer, or `_finish` writes.)
                    self._start_writer()
        if conn.should_close_transport:
            # The connection is over: a write still blocked (the peer reads no more) gets a
            # short grace, not forever.
            scope = self._write_scope
            if scope is not None and scope.deadline == math.inf:
                scope.deadline = trio.current_time() + _driver.TEARDOWN_GRACE
            if not conn.lingering:
                self._wake_main(reading=True)  # to close the transport
            elif not (self._write_shut or self._writing or self._outbox):
                self._shutdown_write()
        if self._idle_waiter is not None and self._may_read():
            self._wake_main()

    def _start_writer(self) -> None:
        self._writing = True
        self._start_child(self._write_loop)

    async def _write_loop(self) -> None:
        # Runs while the socket refuses what there is to write, then ends.
        outbox = self._outbox
        task = self._enter_child(None)
        try:
            try:
                while outbox and not self._broken:
                    # Once the session is cancelled, `_finish` writes what is left.
                    await trio.lowlevel.checkpoint_if_cancelled()
                    data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                    outbox.clear()
                    await self._send(data)
            finally:
                self._writing = False
                self._unpark_drained()
            conn = self._conn
            if conn.should_close_transport and conn.lingering and not (self._write_shut or outbox):
                self._shutdown_write()
        except Exception:
            self._child_failed()
        finally:
            self._leave_child(task)

    def _shutdown_write(self) -> None:
        # Lingering: the session's task drains what the peer still sends (closing now would
        # reset the connection and lose our close frame). Nothing more is written: a peer
        # that waits for our TCP close sees the FIN. Only when no write is in progress.
        self._write_shut = True
        stream = self._stream
        if isinstance(stream, trio.SocketStream) and not self._transport_closed:  # TLS has no half-close
            with contextlib.suppress(OSError):
                stream.socket.shutdown(socket.SHUT_WR)

    async def _send(self, data: bytes) -> None:
        # Shielded: a torn frame would corrupt the stream for the close frame that follows.
        # Bounded only once the connection is over or the session is torn down.
        deadline = self._teardown_deadline
        if self._conn.should_close_transport:
            deadline = min(deadline, trio.current_time() + _driver.TEARDOWN_GRACE)
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            self._write_scope = scope
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                self._broken = True
        self._write_scope = None
        if scope.cancelled_caught:
            self._broken = True
        if self._broken:
            self._conn.receive_eof()
            self._pump()

    def _drain_waiters(self) -> trio.lowlevel.ParkingLot:
        lot = self._drain_lot
        if lot is None:
            lot = self._drain_lot = trio.lowlevel.ParkingLot()
        return lot

    def _unpark_drained(self) -> None:
        if self._drain_lot is not None:
            self._drain_lot.unpark_all()

    # -- the end ---------------------------------------------------------------------

    async def _close_transport(self) -> None:
        if not self._transport_closed:
            self._transport_closed = True
            with trio.move_on_after(_driver.TEARDOWN_GRACE, shield=True) as scope:
                await self._stream.aclose()
            if scope.cancelled_caught:
                await trio.aclose_forcefully(self._stream)
        self._unpark_drained()
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
        if not self._transport_closed and not self._broken:
            await self._linger()
        await self._close_transport()

    async def _linger(self) -> None:
        # Cancelled while open (a server shutting down): our close frame is out. Read on
        # until the peer's, the end of the stream or the close timeout, as the tasks would
        # have: closing with the peer's bytes unread would reset the connection and lose
        # our close frame. Without a close timeout, one teardown grace bounds it.
        conn = self._conn
        fallback = trio.current_time() + _driver.TEARDOWN_GRACE
        with trio.CancelScope(shield=True):
            while conn.state is State.CLOSING or conn.lingering:
                deadline = conn.get_timer()
                with trio.move_on_at(fallback if deadline is None else deadline) as scope:
                    data = await self._receive()
                if scope.cancelled_caught:
                    if deadline is None:
                        return
                    conn.handle_timer(trio.current_time())
                elif data:
                    conn.receive_data(data, trio.current_time())
                else:
                    conn.receive_eof()
                self._pump()


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
