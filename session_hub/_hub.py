"""`Hub`: groups, broadcast, direct notifications and requests across nodes.

The I/O half of the hub, written once with anyio so that it runs under both adapters (trio
and asyncio). It asks `Node` (sans-I/O) what to publish and what a received payload means,
and only moves bytes between the broker and the local sessions' queues.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any, NoReturn, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from session_core import (
    CloseCode,
    InvalidResponse,
    Method,
    ProtocolErrorResponse,
    RemoteError,
    SessionClosed,
)
from session_core.driver import describe_error

from ._broker import Broker, Publication
from ._envelope import Envelope, Kind, Outcome
from ._errors import HubError, HubUnavailable, SessionNotFound
from ._memory import MemoryBroker, bus_for
from ._node import Gap, HubConfig, Node, unique

logger = logging.getLogger("session_hub")

Req = TypeVar("Req")
Resp = TypeVar("Resp")

#: The close code given to a local session whose queue is full: 1013, "try again later"
#: (RFC 6455 section 7.4.1 registry), as Centrifugo does for slow clients.
QUEUE_FULL_CLOSE_CODE = CloseCode.TRY_AGAIN_LATER


class LocalSession(Protocol):
    """What the hub needs from a session of an adapter (`session_trio.Session`,
    `session_asyncio.Session` satisfy it).

    A session may also have `notify_nowait(method, data) -> bool` (the adapters' do): the
    hub then sends without a task switch while the session's transport takes more, and
    queues only what it does not take.
    """

    @property
    def id(self) -> str:
        """The cluster-unique id, minted by `Hub.new_session_id()`."""

    @property
    def closed(self) -> bool:
        """Whether the session has ended."""

    async def notify(self, method: Method[Any, Any, Any], data: Any) -> None:
        """Send a notification to the session's peer."""

    async def request(self, method: Method[Any, Any, Any], data: Any, *, timeout: float | None = None) -> Any:
        """Send a request to the session's peer and return its typed result."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session."""


_Item = tuple[Method[Any, Any, Any], Any]


class _Local:
    __slots__ = ("nowait", "pending", "receive", "send", "session")

    def __init__(self, session: LocalSession, queue_size: int) -> None:
        self.session = session
        # The adapters' sessions send a notification without a task switch when their
        # transport takes more (`notify_nowait`): a broadcast to N local members is then N
        # cheap calls, and the queue and the delivery task only carry a backlog.
        self.nowait: Callable[[Method[Any, Any, Any], Any], bool] | None = getattr(
            session, "notify_nowait", None
        )
        # Items queued and not yet sent by the delivery task: while any is, a new one must
        # queue behind it (sending it at once would overtake them).
        self.pending = 0
        self.send: MemoryObjectSendStream[_Item]
        self.receive: MemoryObjectReceiveStream[_Item]
        self.send, self.receive = anyio.create_memory_object_stream[_Item](queue_size)


#: Envelopes a channel's batch may gather before a broadcast waits for it to leave.
BATCH_BOUND = 256


class _Batch:
    """Envelopes for one channel waiting for the next PUBLISH, and its outcome."""

    __slots__ = ("bodies", "count", "done", "error", "finished", "waiting")

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.waiting = False  # a caller waits for the outcome (else: nobody asks)
        self.done = anyio.Event()
        self.count = 0
        self.error: HubError | None = None
        self.finished = False


class _Waiter:
    __slots__ = ("done", "error", "reply")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: Envelope | None = None
        self.error: BaseException | None = None


_raw_methods: dict[str, Method[Any, Any, Any]] = {}


def _raw(name: str) -> Method[Any, Any, Any]:
    # The node that holds a session knows a remote call's method by name only: data goes
    # to the session's peer as it came (JSON), and the requester types the answer.
    method = _raw_methods.get(name)
    if method is None:
        if len(_raw_methods) >= 1024:
            _raw_methods.clear()
        method = _raw_methods[name] = Method(name, request=Any, response=Any, error=Any)
    return method


class Hub:
    """One node of a hub: the sessions of this process, reaching those of every node.

    Made by `open_hub`. The adapters call `new_session_id`, `attach`, `detach`, `join` and
    `leave` for their sessions; applications call `broadcast`, `notify`, `request` and
    `members`.

    Guarantees: local delivery (a message from this node to a session of this node) never
    goes through the broker and works while the broker is down. Delivery between nodes is at
    most once (pub/sub); every loss the hub can see (a gap in a node's sequence numbers) is
    counted in `lost_messages`, and a request whose answer may be lost fails with
    `HubUnavailable` at once instead of waiting for its timeout.
    """

    def __init__(self, broker: Broker, node: Node, task_group: anyio.abc.TaskGroup, name: str) -> None:
        self._broker = broker
        self._node = node
        self._config = node.config
        self._tg = task_group
        self._name = name
        self._sessions: dict[str, _Local] = {}
        self._waiters: dict[int, _Waiter] = {}
        self._subscribed: set[str] = set()
        self._sync_lock = anyio.Lock()
        self._wake = anyio.Event()
        self._timer_at = -math.inf  # when the timer task wakes next by itself
        self._incoming_requests = 0
        # Requests from other nodes being served: (requester node, its request id) -> the
        # scope a `Kind.CANCEL` from the requester cancels.
        self._serving: dict[tuple[str, int], anyio.CancelScope] = {}
        self._random = random.Random()
        self._published_groups: set[str] = set()  # groups whose members the broker holds
        self._resync = False  # a detach asks `_timers` for a `_sync`
        # Publishing: PUBLISHes awaiting Redis's answer, and the batches made meanwhile.
        self._in_flight = 0
        self._pending: dict[str, _Batch] = {}
        self._flush = anyio.Event()

    # -- state -----------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        """This node's id (the part of its sessions' ids before the last `.`)."""
        return self._node.node_id

    @property
    def connected(self) -> bool:
        """Whether the broker connection is up and subscribed (the in-process hub: always)."""
        return self._broker.connected

    @property
    def lost_messages(self) -> int:
        """Messages from other nodes known lost (gaps in their sequence numbers)."""
        return self._node.lost_messages

    @property
    def undelivered_notifications(self) -> int:
        """Notifications sent from this node that their holding node could not deliver:
        the session had ended (that node said so). The id is remembered, and later
        notifications and requests to it raise `SessionNotFound` at once."""
        return self._node.undelivered_notifications

    @property
    def invalid_messages(self) -> int:
        """Payloads from the broker that were not valid envelopes (dropped, counted)."""
        return self._node.invalid_messages

    # -- the adapters' side ------------------------------------------------------------

    def new_session_id(self) -> str:
        """A new cluster-unique session id, held by this node."""
        return self._node.new_session_id()

    def attach(self, session: LocalSession) -> None:
        """Make `session` (whose id came from `new_session_id`) reachable from every node."""
        self._node.attach(session.id)
        local = self._sessions[session.id] = _Local(session, self._config.queue_size)
        self._tg.start_soon(self._deliver, local)

    def detach(self, session: LocalSession) -> None:
        """Forget `session` (it ended): it leaves all its groups. Safe to call twice."""
        local = self._sessions.pop(session.id, None)
        if local is None:
            return
        local.send.close()  # the delivery task ends once the queue is drained
        self._node.detach(session.id)
        # The broker is brought in line by the timer task: a session may end in a callback
        # that runs in no task (asyncio's `connection_lost`), where no task can be started.
        self._resync = True
        self._wake.set()

    async def join(self, session: LocalSession, group: str) -> None:
        """Add `session` to `group`.

        Returns once the node listens to the group's channel and the membership is
        published, or at once when the broker is down (both are done on reconnection).
        """
        self._node.join(session.id, group)
        await self._sync("join")

    async def leave(self, session: LocalSession, group: str) -> None:
        """Remove `session` from `group` (nothing happens if it is not a member)."""
        self._node.leave(session.id, group)
        await self._sync("leave")

    # -- the application's side -----------------------------------------------------

    async def broadcast(
        self, group: str, method: Method[Req, Any, Any], data: Req, *, exclude: Collection[str] = ()
    ) -> None:
        """Send a notification to every session of `group`, on every node.

        Args:
            group: the group's name.
            method: the notification's method; `data` has its request type.
            data: the notification's data.
            exclude: session ids that must not receive it (a single id is accepted too).

        Returns once the local members have it and it is on its way to the other nodes:
        published, or in the batch of its group's channel that leaves next (when that
        batch is full, once it has left). See `docs/hub.md`, "Publishing".

        Raises:
            MessageTooLarge: the message is over `HubConfig.max_message_size` (nobody got it).
            HubUnavailable: the broker is down; the local members got it, other nodes' not.
        """
        excluded = {exclude} if isinstance(exclude, str) else set(exclude)
        value = method.unstructure_request(data)
        channel = self._node.group_channel(group)
        body = self._node.prepare(
            Kind.BROADCAST, target=group, method=method.name, data=value, exclude=unique(excluded)
        )
        # The members are sent the JSON form made once above, not `data` converted again
        # for each of them.
        raw = _raw(method.name)
        for session_id in self._node.local_members(group) - excluded:
            self._enqueue(session_id, raw, value)
        await self._send(channel, body, count=False)

    async def notify(self, session_id: str, method: Method[Req, Any, Any], data: Req) -> None:
        """Send a notification to one session, wherever it is.

        Fire and forget, at most once: it returns once the notification is on its way,
        not once delivered. A session that has just ended on a live node cannot take it:
        that node says so (not to this call, which has returned, but to this node, which
        counts it in `undelivered_notifications`, logs it, and remembers the id, so that
        the next notification or request to it raises `SessionNotFound` at once).

        Raises:
            SessionNotFound: the id is this node's and not attached, its node is gone, or
                its node said it has ended.
            HubUnavailable: the session is on another node and the broker is down.
            MessageTooLarge: over `HubConfig.max_message_size`.
        """
        if self._node.is_local(session_id):
            if session_id not in self._sessions:
                raise SessionNotFound(session_id)
            self._enqueue(session_id, method, data)
            return
        if self._node.known_ended(session_id):
            raise SessionNotFound(session_id)
        node_id = self._node.node_of(session_id)
        channel = self._node.inbox_of(node_id)
        body = self._node.prepare(
            Kind.NOTIFICATION, target=session_id, method=method.name, data=method.unstructure_request(data)
        )
        if not await self._send(channel, body):
            await self._not_reached(session_id, node_id)

    async def request(
        self, session_id: str, method: Method[Req, Resp, Any], data: Req, *, timeout: float | None = None
    ) -> Resp:
        """What `session.request` does on the node that holds the session, from any node.

        The request goes to the session's peer over its WebSocket; the answer comes back
        here, typed as for a local request.

        Args:
            session_id: the session, on any node.
            method: the request's method.
            data: the request's data, of the method's request type.
            timeout: seconds to wait for the answer (default `HubConfig.request_timeout`).

        Returns:
            The response, converted to the method's response type.

        Raises:
            RemoteError: the peer answered with an error (typed ``RemoteError.error``); protocol errors
                raise its subclasses (`MethodNotFound`...).
            InvalidResponse: the answer does not fit the method's types.
            TimeoutError: no answer within `timeout`.
            SessionClosed: the session ended before answering.
            SessionNotFound: no node holds `session_id` (at once, not after the timeout).
            HubUnavailable: the broker is down, or the answer may have been lost on the way.
            MessageTooLarge: over `HubConfig.max_message_size`.
        """
        if self._node.is_local(session_id):
            local = self._sessions.get(session_id)
            if local is None:
                raise SessionNotFound(session_id)
            result: Resp = await local.session.request(
                method, data, timeout=self._config.request_timeout if timeout is None else timeout
            )
            return result
        if self._node.known_ended(session_id):
            raise SessionNotFound(session_id)
        if not self._broker.connected:
            raise HubUnavailable(f"hub {self._name} is not connected to its broker")
        node_id = self._node.node_of(session_id)
        channel = self._node.inbox_of(node_id)
        value = method.unstructure_request(data)
        request_id, deadline = self._node.start_request(session_id, anyio.current_time(), timeout)
        waiter = self._waiters[request_id] = _Waiter()
        try:
            body = self._node.prepare(
                Kind.REQUEST,
                target=session_id,
                method=method.name,
                data=value,
                request_id=request_id,
                reply_to=self._node.node_id,
                timeout=max(0.0, deadline - anyio.current_time()),
            )
            if deadline < self._timer_at:
                self._wake.set()  # the timer loop learns of a deadline earlier than its own
            if not await self._send(channel, body):
                await self._not_reached(session_id, node_id)
            await waiter.done.wait()
        except anyio.get_cancelled_exc_class():
            # The caller gave up: the holding node gives up the session's request too
            # (the session sends `$/cancel` to its peer).
            if not waiter.done.is_set():
                self._send_cancel(channel, request_id)
            raise
        finally:
            self._waiters.pop(request_id, None)
            self._node.finish_request(request_id)
        if waiter.error is not None:
            raise waiter.error
        assert waiter.reply is not None
        return self._result(method, session_id, waiter.reply)  # type: ignore[no-any-return]

    async def members(self, group: str) -> set[str]:
        """The ids of `group`'s sessions across the cluster.

        Eventually consistent: this node's members are exact; another node's are as it last
        published them, and a node that stops renewing its lease drops out within
        `HubConfig.lease` seconds.

        Raises:
            HubUnavailable: the broker is down.
        """
        by_node = await self._broker.members(group)
        by_node.pop(self._node.node_id, None)
        result = set(self._node.local_members(group))
        for ids in by_node.values():
            result |= ids
        return result

    # -- internals: sending ------------------------------------------------------------

    def _enqueue(self, session_id: str, method: Method[Any, Any, Any], data: Any) -> None:
        local = self._sessions.get(session_id)
        if local is None:
            return
        if local.nowait is not None and not local.pending:
            try:
                if local.nowait(method, data):
                    return
            except SessionClosed:
                self.detach(local.session)
                return
            except Exception:
                logger.exception("hub %s: notification to session %s failed", self._name, session_id)
                return
        try:
            local.send.send_nowait((method, data))
            local.pending += 1
        except anyio.WouldBlock:
            # The bounded queue is full: the session's peer does not keep up. Closing it is
            # the stated policy (1013, try again later); blocking would hold up the read loop.
            logger.warning("hub: session %s is too slow (queue full), closing it with 1013", session_id)
            self.detach(local.session)
            self._tg.start_soon(self._close, local.session, QUEUE_FULL_CLOSE_CODE, "hub queue full")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # detached meanwhile

    async def _send(self, channel: str, body: bytes, *, count: bool = True) -> int:
        """Publish an envelope (`Node.prepare`'s body); return how many nodes listened.

        Nothing on its way: it leaves at once, alone. Otherwise it waits for the next batch
        of its channel (`_flusher`: the next turn of the loop, or once the PUBLISH on its
        way is answered), with whatever else is made meanwhile: under load a channel's
        envelopes leave as one PUBLISH, while a lone message is never held back.

        Without `count` (a broadcast's), an envelope that joins a batch returns at once
        (0), unless the batch is already `BATCH_BOUND` long: then its caller waits for the
        batch's PUBLISH, so that a fast sender cannot outrun Redis. A failure of that
        PUBLISH is then not raised to it: its receivers count the envelopes as lost.
        """
        if not self._broker.connected:
            self._refused(channel, body)
        if self._in_flight or self._pending:
            batch = self._batch(channel)
            batch.bodies.append(body)
            if not count and len(batch.bodies) < BATCH_BOUND:
                await anyio.lowlevel.checkpoint()
                return 0
            batch.waiting = True
            await batch.done.wait()
            if batch.error is not None:
                raise batch.error
            return batch.count
        publications = [self._broker.publish_start(channel, m) for m in self._node.seal(channel, [body])]
        self._in_flight += 1
        try:
            return max([await p.result() for p in publications])
        finally:
            self._in_flight -= 1

    def _send_nowait(self, channel: str, body: bytes) -> None:
        """Publish an envelope without waiting for the outcome (in order with `_send`).

        Raises:
            HubUnavailable: the broker is down.
        """
        if not self._broker.connected:
            self._refused(channel, body)
        if self._in_flight or self._pending:
            self._batch(channel).bodies.append(body)
        else:
            for message in self._node.seal(channel, [body]):
                self._broker.publish_nowait(channel, message)

    def _refused(self, channel: str, body: bytes) -> NoReturn:
        # Not sent: the broker is down. It still takes its sequence number, so that the
        # nodes it was meant for count it as lost once they hear from this node again.
        self._node.seal(channel, [body])
        raise HubUnavailable(f"hub {self._name} is not connected to its broker")

    def _batch(self, channel: str) -> _Batch:
        batch = self._pending.get(channel)
        if batch is None:
            batch = self._pending[channel] = _Batch()
            self._flush.set()
        return batch

    async def _flusher(self) -> None:
        # Publishes the batches made while something was on its way: every channel's
        # envelopes of one turn of the loop, in the order they were made.
        while True:
            await self._flush.wait()
            self._flush = anyio.Event()
            pending, self._pending = self._pending, {}
            started: list[tuple[_Batch, Publication]] = []
            try:
                for channel, batch in pending.items():
                    try:
                        for message in self._node.seal(channel, batch.bodies):
                            # Awaited even when nobody asks: the next batch gathers what is
                            # made until Redis has answered this one.
                            started.append((batch, self._broker.publish_start(channel, message)))
                    except HubError as exc:
                        batch.error = exc
                        if not batch.waiting:
                            logger.warning(
                                "hub %s: a batch for %s was not sent: %s", self._name, channel, exc
                            )
                self._in_flight += 1
                try:
                    for batch, publication in started:
                        try:
                            batch.count = max(batch.count, await publication.result())
                        except HubError as exc:
                            batch.error = exc
                    for batch in pending.values():
                        batch.finished = True
                finally:
                    self._in_flight -= 1
            finally:
                for batch in pending.values():
                    if batch.error is None and not batch.finished:
                        batch.error = HubUnavailable(f"hub {self._name} is closed")
                    batch.done.set()

    async def _not_reached(self, session_id: str, node_id: str) -> None:
        # Nobody listens on the node's inbox: the node is gone (its sessions with it), or
        # alive but reconnecting. Its lease tells which, so that the caller is not told
        # "not found" about a session that exists.
        if await self._broker.node_alive(node_id):
            raise HubUnavailable(f"node {node_id} holding {session_id!r} is not listening (reconnecting)")
        raise SessionNotFound(session_id)

    def _send_cancel(self, channel: str, request_id: int) -> None:
        try:
            self._send_nowait(channel, self._node.prepare(Kind.CANCEL, request_id=request_id))
        except HubError as exc:
            # The holding node's session still ends its request by its own timeout.
            logger.debug("hub %s: could not cancel request %d: %s", self._name, request_id, exc)

    def _result(self, method: Method[Any, Any, Any], session_id: str, reply: Envelope) -> Any:
        outcome = reply.outcome
        if outcome is Outcome.RESULT:
            try:
                return method.structure_response(reply.data)
            except Exception as exc:
                raise InvalidResponse(method.name, 0, describe_error(exc, method.response)) from None
        if outcome is Outcome.ERROR:
            try:
                error = method.structure_error(reply.data)
            except Exception as exc:
                raise InvalidResponse(method.name, 0, describe_error(exc, method.error)) from None
            raise RemoteError(error, method=method.name)
        if outcome is Outcome.PROTOCOL_ERROR:
            raise ProtocolErrorResponse.from_code(reply.code, reply.message, method=method.name)
        if outcome is Outcome.CLOSED:
            raise SessionClosed(reply.code or 1006, reply.message)
        if outcome is Outcome.NOT_FOUND:
            self._node.session_ended(session_id)
            raise SessionNotFound(session_id)
        if outcome is Outcome.TIMEOUT:
            raise TimeoutError(f"no answer from session {session_id!r}")
        raise HubError(f"request to {session_id!r} failed on its node: {reply.message}")

    # -- internals: receiving (called by the broker's read loop; never blocks) ---------

    def channels(self) -> list[str]:  # BrokerEvents
        """The channels the broker subscribes to on (re)connection."""
        return self._node.channels()

    def on_connected(self, subscribed: list[str]) -> None:  # BrokerEvents
        """The broker is connected and subscribed to `subscribed`."""
        # What was subscribed, not what `channels()` says now: a group joined while the
        # broker was subscribing is left to `_sync`.
        self._subscribed = set(subscribed)
        self._node.connected(anyio.current_time())
        logger.info("hub %s: connected (node %s)", self._name, self._node.node_id)
        self._wake.set()
        self._tg.start_soon(self._sync, "reconnect")  # groups joined meanwhile

    def on_disconnected(self, reason: str) -> None:  # BrokerEvents
        """The broker connection is lost; requests in flight to other nodes fail now."""
        self._subscribed.clear()
        logger.warning("hub %s: broker connection lost (%s); reconnecting", self._name, reason)
        self._fail(self._node.disconnected(), "the broker connection was lost; the answer may be lost")

    def backoff(self) -> float:  # BrokerEvents
        """The delay before the next connection attempt (with jitter)."""
        return self._node.backoff(self._random.random())

    def on_message(self, channel: str, payload: bytes) -> None:  # BrokerEvents
        """One payload from the broker. Never raises: a bad one is counted and dropped."""
        try:
            self._on_message(channel, payload)
        except Exception:
            # A bug here must not stop the read loop (every other session would go deaf);
            # it is logged loudly instead.
            logger.exception("hub %s: failed to handle a message on %s", self._name, channel)

    def _on_message(self, channel: str, payload: bytes) -> None:
        envelopes, gap = self._node.receive(channel, payload)
        if gap is not None:
            self._on_gap(gap)
        for envelope in envelopes:
            try:
                self._on_envelope(channel, envelope)
            except Exception:
                # One envelope's failure (a bug) must not cost the rest of its batch.
                logger.exception("hub %s: failed to handle a message on %s", self._name, channel)

    def _on_envelope(self, channel: str, envelope: Envelope) -> None:
        kind = envelope.kind
        if kind is Kind.BROADCAST:
            if channel == self._node.group_channel(envelope.target):
                method = _raw(envelope.method)
                excluded = set(envelope.exclude)
                for session_id in self._node.local_members(envelope.target):
                    if session_id not in excluded:
                        self._enqueue(session_id, method, envelope.data)
        elif kind is Kind.NOTIFICATION:
            target = envelope.target
            if target in self._sessions:
                self._enqueue(target, _raw(envelope.method), envelope.data)
            elif self._node.is_local(target):
                self._undelivered(envelope)
        elif kind is Kind.REQUEST:
            local = self._sessions.get(envelope.target)
            if local is None:
                self._reply(envelope, Outcome.NOT_FOUND, {})
            elif self._incoming_requests >= self._config.max_incoming_requests:
                self._reply(envelope, Outcome.FAILED, {"message": "hub busy"})
            else:
                self._incoming_requests += 1
                # Made here, entered by the task: a cancel that comes before the task
                # starts still cancels it.
                scope = self._serving[(envelope.source, envelope.request_id)] = anyio.CancelScope()
                self._tg.start_soon(self._serve_request, local, envelope, scope)
        elif kind is Kind.CANCEL:
            serving = self._serving.get((envelope.source, envelope.request_id))
            if serving is not None:
                serving.cancel()
        elif kind is Kind.UNDELIVERED:
            self._node.undelivered(envelope.target)
            logger.warning(
                "hub %s: a notification to session %s was not delivered: it has ended (node %s)",
                self._name,
                envelope.target,
                envelope.source,
            )
        elif kind is Kind.REPLY:
            waiter = self._waiters.get(envelope.request_id)
            if waiter is not None and not waiter.done.is_set():
                waiter.reply = envelope
                waiter.done.set()
        elif kind is Kind.CANARY:
            self._node.canary_heard(anyio.current_time())

    def _undelivered(self, notification: Envelope) -> None:
        # The session ended on this node (it was ours): tell the sender, which cannot
        # learn it otherwise. Nothing is sent for a node that is not connected.
        channel = self._node.inbox_of(notification.source)
        try:
            if self._broker.connected:
                self._send_nowait(channel, self._node.prepare(Kind.UNDELIVERED, target=notification.target))
        except HubError as exc:
            logger.debug("hub %s: could not report an undelivered notification: %s", self._name, exc)

    def _on_gap(self, gap: Gap) -> None:
        logger.warning(
            "hub %s: %d message(s) from node %s on %s were lost",
            self._name,
            gap.lost,
            gap.source,
            gap.channel,
        )
        if gap.channel == self._node.inbox:
            # A lost message from that node may be the answer to one of our requests: fail
            # them now rather than let them wait for their timeout.
            self._fail(self._node.requests_to(gap.source), f"messages from node {gap.source} were lost")

    def _fail(self, request_ids: list[int], why: str) -> None:
        for request_id in request_ids:
            waiter = self._waiters.get(request_id)
            if waiter is not None and not waiter.done.is_set():
                waiter.error = HubUnavailable(why)
                waiter.done.set()

    async def _serve_request(self, local: _Local, envelope: Envelope, scope: anyio.CancelScope) -> None:
        fields: dict[str, Any] = {}
        outcome = Outcome.FAILED
        try:
            with scope:
                try:
                    fields["data"] = await local.session.request(
                        _raw(envelope.method), envelope.data, timeout=envelope.timeout
                    )
                    outcome = Outcome.RESULT
                except ProtocolErrorResponse as exc:
                    outcome, fields = Outcome.PROTOCOL_ERROR, {"code": exc.code, "message": exc.message}
                except RemoteError as exc:
                    outcome, fields = Outcome.ERROR, {"data": exc.error}
                except SessionClosed as exc:
                    outcome, fields = Outcome.CLOSED, {"code": exc.code, "message": exc.reason}
                except TimeoutError:
                    outcome = Outcome.TIMEOUT
                except Exception as exc:
                    outcome, fields = Outcome.FAILED, {"message": f"{type(exc).__name__}: {exc}"[:300]}
        finally:
            self._incoming_requests -= 1
            self._serving.pop((envelope.source, envelope.request_id), None)
        if not scope.cancelled_caught:  # cancelled: the requester gave up, nobody waits
            self._reply(envelope, outcome, fields)

    def _reply(self, request: Envelope, outcome: Outcome, fields: dict[str, Any]) -> None:
        # Queued without waiting for Redis's count: nobody is left to tell of a failure
        # (the requester fails its requests itself on a disconnection or a gap).
        channel = self._node.inbox_of(request.reply_to)
        try:
            try:
                body = self._node.prepare(
                    Kind.REPLY, request_id=request.request_id, outcome=outcome, **fields
                )
            except HubError as exc:  # too large an answer: say so instead
                body = self._node.prepare(
                    Kind.REPLY, request_id=request.request_id, outcome=Outcome.FAILED, message=str(exc)
                )
            self._send_nowait(channel, body)
        except HubError as exc:
            logger.warning(
                "hub %s: could not send an answer to node %s: %s", self._name, request.reply_to, exc
            )

    # -- internals: tasks -----------------------------------------------------------------

    async def _deliver(self, local: _Local) -> None:
        # One task per local session: a slow peer only ever fills its own queue.
        session = local.session
        async with local.receive:
            async for method, data in local.receive:
                try:
                    await session.notify(method, data)
                except SessionClosed:
                    self.detach(session)
                    return
                except Exception:
                    logger.exception("hub %s: notification to session %s failed", self._name, session.id)
                finally:
                    local.pending -= 1

    async def _close(self, session: LocalSession, code: int, reason: str) -> None:
        try:
            await session.close(code, reason)
        except Exception:
            logger.exception("hub %s: closing session %s failed", self._name, session.id)

    async def _sync(self, why: str) -> None:
        """Bring the broker in line with the local state: subscriptions, then presence.

        Level-triggered (compares what is with what should be) so that concurrent joins and
        leaves, and reconnections, all end in the same state. Broker trouble is only logged:
        the next reconnection does it again.
        """
        async with self._sync_lock:
            if not self._broker.connected:
                return
            wanted = set(self._node.channels())
            try:
                for channel in sorted(wanted - self._subscribed):
                    await self._broker.subscribe(channel)
                    self._node.subscribed(channel)
                    self._subscribed.add(channel)
                for channel in sorted(self._subscribed - wanted):
                    self._subscribed.discard(channel)
                    self._node.unsubscribed(channel)
                    self._node.forget_channel(channel)
                    await self._broker.unsubscribe(channel)
                await self._put_presence()
            except HubError as exc:
                logger.warning("hub %s: could not update the broker (%s): %s", self._name, why, exc)
                self._broker.reconnect()

    async def _put_presence(self) -> None:
        lease = self._config.lease
        node_id = self._node.node_id
        await self._broker.put_node(node_id, lease)
        groups = self._node.groups()
        for group, members in groups.items():
            await self._broker.put_members(group, node_id, members, lease)
        for group in self._published_groups - groups.keys():
            await self._broker.put_members(group, node_id, (), lease)
        self._published_groups = set(groups)

    async def _timers(self) -> None:
        # Canary, deaf check, lease renewal and request deadlines, from the node's schedule.
        while True:
            now = anyio.current_time()
            if self._resync:
                self._resync = False
                self._tg.start_soon(self._sync, "detach")
            if self._broker.connected:
                if self._node.deaf(now):
                    logger.warning(
                        "hub %s: no canary came back; the subscription is deaf, reconnecting", self._name
                    )
                    self._node.disconnected()
                    self._broker.reconnect()
                else:
                    canary = self._node.canary(now)
                    if canary is not None:
                        try:
                            # Alone on its channel: nothing else is sent to its own inbox.
                            self._broker.publish_nowait(self._node.inbox, canary)
                        except HubError as exc:
                            logger.debug("hub %s: canary not sent: %s", self._name, exc)
                    if self._node.renew_due(now):
                        self._tg.start_soon(self._sync, "renewal")
            for request_id in self._node.expired_requests(now):
                waiter = self._waiters.get(request_id)
                if waiter is not None and not waiter.done.is_set():
                    waiter.error = TimeoutError("no answer within the timeout")
                    waiter.done.set()
                self._node.finish_request(request_id)
            timer = self._timer_at = self._node.get_timer()
            with anyio.move_on_after(
                max(0.0, timer - anyio.current_time()) if timer < math.inf else math.inf
            ):
                await self._wake.wait()
            self._timer_at = -math.inf  # awake: every new deadline is seen
            self._wake = anyio.Event()

    def _abandon(self) -> None:
        # The hub is closing: nobody may be left waiting for a batch that never leaves.
        pending, self._pending = self._pending, {}
        for batch in pending.values():
            batch.error = HubUnavailable(f"hub {self._name} is closed")
            batch.done.set()

    async def _shutdown(self) -> None:
        for local in self._sessions.values():
            local.send.close()  # each delivery task closes its receiving end
        # A clean exit removes the node's presence at once, not after its lease.
        with anyio.move_on_after(self._config.operation_timeout, shield=True):
            try:
                if self._broker.connected:
                    for group in self._node.groups():
                        await self._broker.put_members(group, self._node.node_id, (), self._config.lease)
                    await self._broker.put_node(self._node.node_id, 0)
            except HubError:
                pass


#: What `open_hub("redis://...")` raises (an `ImportError`) when coredis is not installed.
REDIS_EXTRA_MISSING = (
    "a Redis hub needs the redis extra, which is not installed: pip install 'session-py[redis]'"
)


def _without_password(url: str) -> str:
    # The URL names the hub in log lines; credentials in it must not reach the logs.
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


@asynccontextmanager
async def open_hub(
    url: str | None = None, *, config: HubConfig | None = None, node_id: str | None = None
) -> AsyncIterator[Hub]:
    """Open this process's node of a hub.

    Args:
        url: None or `memory://` for an in-process hub (nothing to install);
            `memory://<name>` for in-process hubs sharing the bus `<name>` (tests);
            `redis://host:port/db` or `rediss://...` for a Redis-backed hub (the extra
            `session-py[redis]`).
        config: timings and limits (`HubConfig`).
        node_id: this node's id (default: random).

    Yields:
        The hub, once its first connection attempt has ended (`hub.connected` tells how).
    """
    config = config or HubConfig()
    node = Node(node_id or secrets.token_hex(6), config)
    broker: Broker
    if url is None or url.startswith("memory://"):
        broker = MemoryBroker(bus_for(url or "memory://"))
        name = url or "memory://"
    elif url.startswith(("redis://", "rediss://")):
        # coredis is the optional extra `session-py[redis]`: imported only when used.
        try:
            from ._redis import RedisBroker  # noqa: PLC0415
        except ImportError as exc:
            if (exc.name or "").partition(".")[0] != "coredis":
                raise
            raise ImportError(REDIS_EXTRA_MISSING, name="coredis") from None

        broker = RedisBroker(url, config)
        name = _without_password(url)
    else:
        raise ValueError(f"unsupported hub URL {url!r}: use memory://, redis:// or rediss://")
    try:
        async with broker.context(), anyio.create_task_group() as tg:
            hub = Hub(broker, node, tg, name)
            await tg.start(broker.run, hub)
            tg.start_soon(hub._timers)
            tg.start_soon(hub._flusher)
            try:
                yield hub
            finally:
                await hub._shutdown()
                tg.cancel_scope.cancel()
                hub._abandon()
    except BaseExceptionGroup as group:
        # The task group wraps what the `async with open_hub()` block raised; the caller
        # never opened a task group and gets its own exception back, unwrapped.
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
