"""The in-process broker: the hub of a single process, with nothing to install.

It keeps the hub's semantics (channels, presence leases, at most once) so that the same
code and the same tests serve one process and many. Several hubs of one process share a
bus when opened with the same `memory://<name>` URL (the tests do this to play several
nodes).
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ._broker import BrokerEvents

#: Payloads waiting for one node's read loop; more are dropped (and show up as a gap).
INBOUND_BOUND = 65536


class MemoryBus:
    """The shared state of in-process hubs: subscriptions and presence leases."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[MemoryBroker]] = {}
        self.members: dict[str, dict[str, tuple[frozenset[str], float]]] = {}
        self.nodes: dict[str, float] = {}


_buses: weakref.WeakValueDictionary[str, MemoryBus] = weakref.WeakValueDictionary()


def bus_for(url: str) -> MemoryBus:
    """The bus of a `memory://` URL: a new one for `memory://`, a shared one by name."""
    name = url.removeprefix("memory://")
    if not name:
        return MemoryBus()
    bus = _buses.get(name)
    if bus is None:
        bus = _buses[name] = MemoryBus()
    return bus


class _Published:
    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    async def result(self) -> int:
        # A checkpoint, as any real publish has: a loop of broadcasts lets the sessions'
        # delivery tasks run instead of filling every queue to its bound. (After handing
        # the payload over, so that publishes leave in the order they were made.)
        await anyio.lowlevel.checkpoint()
        return self.count


class MemoryBroker:
    """One node's connection to a `MemoryBus`."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._send, self._receive = anyio.create_memory_object_stream[tuple[str, bytes]](INBOUND_BOUND)
        self._channels: set[str] = set()
        self._events: BrokerEvents | None = None

    @property
    def connected(self) -> bool:
        """Always: there is no connection to lose."""
        return True

    @asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        """Leave the bus on exit."""
        try:
            yield
        finally:
            for channel in list(self._channels):
                self._drop(channel)
            self._send.close()
            self._receive.close()

    async def run(self, events: BrokerEvents, *, task_status: TaskStatus[None]) -> None:
        """Deliver what is published to the subscribed channels, in order."""
        self._events = events
        channels = events.channels()
        for channel in channels:
            await self.subscribe(channel)
        events.on_connected(channels)
        task_status.started()
        async for channel, payload in self._receive:
            events.on_message(channel, payload)

    def reconnect(self) -> None:
        """Subscribe again to every channel (what a deaf subscription needs)."""
        if self._events is None:
            return
        self._events.on_disconnected("reconnecting on request")
        for channel in self._channels:
            self._bus.subscribers.setdefault(channel, set()).add(self)
        self._events.on_connected(sorted(self._channels))

    async def publish(self, channel: str, payload: bytes) -> int:
        """Hand `payload` to every subscriber of `channel`; return how many got it."""
        return await self.publish_start(channel, payload).result()

    def publish_start(self, channel: str, payload: bytes) -> _Published:
        """Hand `payload` over now; the result is how many subscribers got it."""
        return _Published(self._hand_over(channel, payload))

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        """Hand `payload` to every subscriber of `channel` now."""
        self._hand_over(channel, payload)

    def _hand_over(self, channel: str, payload: bytes) -> int:
        received = 0
        for broker in list(self._bus.subscribers.get(channel, ())):
            try:
                broker._send.send_nowait((channel, payload))
                received += 1
            except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                pass  # at most once, as over a real broker: the receiver counts the gap
        return received

    async def subscribe(self, channel: str) -> None:
        """Receive what is published to `channel` from now on."""
        self._bus.subscribers.setdefault(channel, set()).add(self)
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`."""
        self._drop(channel)

    def _drop(self, channel: str) -> None:
        self._channels.discard(channel)
        subscribers = self._bus.subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(self)
            if not subscribers:
                del self._bus.subscribers[channel]

    async def put_members(self, group: str, node_id: str, members: Collection[str], lease: float) -> None:
        """Store `node_id`'s members of `group` until `lease` seconds from now."""
        by_node = self._bus.members.setdefault(group, {})
        if members:
            by_node[node_id] = (frozenset(members), anyio.current_time() + lease)
        else:
            by_node.pop(node_id, None)
            if not by_node:
                del self._bus.members[group]

    async def put_node(self, node_id: str, lease: float) -> None:
        """Record that `node_id` is alive for `lease` seconds (0: gone)."""
        if lease > 0:
            self._bus.nodes[node_id] = anyio.current_time() + lease
        else:
            self._bus.nodes.pop(node_id, None)

    async def node_alive(self, node_id: str) -> bool:
        """Whether `node_id`'s lease is current."""
        return self._bus.nodes.get(node_id, -1.0) > anyio.current_time()

    async def members(self, group: str) -> dict[str, set[str]]:
        """The members of `group` by node, leases expired left out."""
        now = anyio.current_time()
        return {n: set(m) for n, (m, until) in self._bus.members.get(group, {}).items() if until > now}
