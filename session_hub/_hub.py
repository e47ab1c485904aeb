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
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc
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

from ._broker import Broker
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
        self._incoming_requests = 0
        self._random = random.Random()
        self._published_groups: set[str] = set()  # groups whose members the broker holds
        self._resync = False  # a detach asks `_timers` for a `_sync`

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

        Raises:
            MessageTooLarge: the message is over `HubConfig.max_message_size` (nobody got it).
            HubUnavailable: the broker is down; the local members got it, other nodes' not.
        """
        excluded = {exclude} if isinstance(exclude, str) else set(exclude)
        value = method.unstructure_request(data)
        channel = self._node.group_channel(group)
        payload = self._node.build(
            channel, Kind.BROADCAST, target=group, method=method.name, data=value, exclude=unique(excluded)
        )
        for session_id in self._node.local_members(group) - excluded:
            self._enqueue(session_id, method, data)
        await self._publish(channel, payload)

    async def notify(self, session_id: str, method: Method[Req, Any, Any], data: Req) -> None:
        """Send a notification to one session, wherever it is.

        Fire and forget, at most once: a notification is not acknowledged, so a session
        that just ended on a live node drops it silently (a request would be answered).

        Raises:
            SessionNotFound: the id is this node's and not attached, or its node is gone.
            HubUnavailable: the session is on another node and the broker is down.
            MessageTooLarge: over `HubConfig.max_message_size`.
        """
        if self._node.is_local(session_id):
            if session_id not in self._sessions:
                raise SessionNotFound(session_id)
            self._enqueue(session_id, method, data)
            return
        node_id = self._node.node_of(session_id)
        channel = self._node.inbox_of(node_id)
        payload = self._node.build(
            channel,
            Kind.NOTIFICATION,
            target=session_id,
            method=method.name,
            data=method.unstructure_request(data),
        )
        if not await self._publish(channel, payload):
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
        if not self._broker.connected:
            raise HubUnavailable(f"hub {self._name} is not connected to its broker")
        node_id = self._node.node_of(session_id)
        channel = self._node.inbox_of(node_id)
        value = method.unstructure_request(data)
        request_id, deadline = self._node.start_request(session_id, anyio.current_time(), timeout)
        waiter = self._waiters[request_id] = _Waiter()
        try:
            payload = self._node.build(
                channel,
                Kind.REQUEST,
                target=session_id,
                method=method.name,
                data=value,
                request_id=request_id,
                reply_to=self._node.node_id,
                timeout=max(0.0, deadline - anyio.current_time()),
            )
            self._wake.set()  # the timer loop learns of the new deadline
            if not await self._publish(channel, payload):
                await self._not_reached(session_id, node_id)
            await waiter.done.wait()
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

    async def _publish(self, channel: str, payload: bytes) -> int:
        if not self._broker.connected:
            raise HubUnavailable(f"hub {self._name} is not connected to its broker")
        return await self._broker.publish(channel, payload)

    async def _not_reached(self, session_id: str, node_id: str) -> None:
        # Nobody listens on the node's inbox: the node is gone (its sessions with it), or
        # alive but reconnecting. Its lease tells which, so that the caller is not told
        # "not found" about a session that exists.
        if await self._broker.node_alive(node_id):
            raise HubUnavailable(f"node {node_id} holding {session_id!r} is not listening (reconnecting)")
        raise SessionNotFound(session_id)

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
        envelope, gap = self._node.receive(channel, payload)
        if gap is not None:
            self._on_gap(gap)
        if envelope is None:
            return
        kind = envelope.kind
        if kind is Kind.BROADCAST:
            if channel == self._node.group_channel(envelope.target):
                method = _raw(envelope.method)
                excluded = set(envelope.exclude)
                for session_id in self._node.local_members(envelope.target):
                    if session_id not in excluded:
                        self._enqueue(session_id, method, envelope.data)
        elif kind is Kind.NOTIFICATION:
            self._enqueue(envelope.target, _raw(envelope.method), envelope.data)
        elif kind is Kind.REQUEST:
            local = self._sessions.get(envelope.target)
            if local is None:
                self._tg.start_soon(self._reply, envelope, Outcome.NOT_FOUND, {})
            elif self._incoming_requests >= self._config.max_incoming_requests:
                self._tg.start_soon(self._reply, envelope, Outcome.FAILED, {"message": "hub busy"})
            else:
                self._incoming_requests += 1
                self._tg.start_soon(self._serve_request, local, envelope)
        elif kind is Kind.REPLY:
            waiter = self._waiters.get(envelope.request_id)
            if waiter is not None and not waiter.done.is_set():
                waiter.reply = envelope
                waiter.done.set()
        elif kind is Kind.CANARY:
            self._node.canary_heard(anyio.current_time())

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

    async def _serve_request(self, local: _Local, envelope: Envelope) -> None:
        fields: dict[str, Any] = {}
        try:
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
        await self._reply(envelope, outcome, fields)

    async def _reply(self, request: Envelope, outcome: Outcome, fields: dict[str, Any]) -> None:
        channel = self._node.inbox_of(request.reply_to)
        try:
            try:
                payload = self._node.build(
                    channel, Kind.REPLY, request_id=request.request_id, outcome=outcome, **fields
                )
            except HubError as exc:  # too large an answer: say so instead
                payload = self._node.build(
                    channel,
                    Kind.REPLY,
                    request_id=request.request_id,
                    outcome=Outcome.FAILED,
                    message=str(exc),
                )
            await self._publish(channel, payload)
        except HubError as exc:
            # The requester learns of it: it fails its requests on a disconnection or a gap.
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
                        self._tg.start_soon(self._publish_quietly, self._node.inbox, canary)
                    if self._node.renew_due(now):
                        self._tg.start_soon(self._sync, "renewal")
            for request_id in self._node.expired_requests(now):
                waiter = self._waiters.get(request_id)
                if waiter is not None and not waiter.done.is_set():
                    waiter.error = TimeoutError("no answer within the timeout")
                    waiter.done.set()
                self._node.finish_request(request_id)
            timer = self._node.get_timer()
            with anyio.move_on_after(
                max(0.0, timer - anyio.current_time()) if timer < math.inf else math.inf
            ):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _publish_quietly(self, channel: str, payload: bytes) -> None:
        try:
            await self._publish(channel, payload)
        except HubError as exc:
            logger.debug("hub %s: canary not sent: %s", self._name, exc)

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
        from ._redis import RedisBroker  # noqa: PLC0415

        broker = RedisBroker(url, config)
        name = _without_password(url)
    else:
        raise ValueError(f"unsupported hub URL {url!r}: use memory://, redis:// or rediss://")
    try:
        async with broker.context(), anyio.create_task_group() as tg:
            hub = Hub(broker, node, tg, name)
            await tg.start(broker.run, hub)
            tg.start_soon(hub._timers)
            try:
                yield hub
            finally:
                await hub._shutdown()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The task group wraps what the `async with open_hub()` block raised; the caller
        # never opened a task group and gets its own exception back, unwrapped.
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
