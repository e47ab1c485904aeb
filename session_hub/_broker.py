"""What the hub needs from a broker: move bytes, keep subscriptions, keep presence.

A broker decides nothing (`_node.py` does); it publishes payloads, delivers what arrives on
the subscribed channels, reconnects when its connection drops, and stores each node's
members of each group under a lease. `_memory.py` and `_redis.py` implement it.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from anyio.abc import TaskStatus


class BrokerEvents(Protocol):
    """What a broker tells the hub. None of these may block or raise."""

    def channels(self) -> list[str]:
        """The channels to subscribe to on (re)connection."""

    def on_connected(self, subscribed: list[str]) -> None:
        """Subscribed to `subscribed` (what `channels()` gave): messages may flow."""

    def on_disconnected(self, reason: str) -> None:
        """The connection is lost; the broker is reconnecting."""

    def on_message(self, channel: str, payload: bytes) -> None:
        """A payload arrived on `channel`."""

    def backoff(self) -> float:
        """Seconds to wait before the next connection attempt."""


class Publication(Protocol):
    """A PUBLISH on its way (`Broker.publish_start`)."""

    async def result(self) -> int:
        """How many subscribers received it. Raises `HubUnavailable`."""


class Broker(Protocol):
    """A broker connection of one hub node."""

    @property
    def connected(self) -> bool:
        """Whether the connection is up and subscribed."""

    def context(self) -> AbstractAsyncContextManager[None]:
        """Open and close the broker's client (around every other call)."""

    async def run(self, events: BrokerEvents, *, task_status: TaskStatus[None]) -> None:
        """Connect, subscribe, deliver messages, reconnect; forever. Started once the first
        connection attempt ends (successful or not)."""

    def reconnect(self) -> None:
        """Drop the connection and make a new one (a deaf subscription was detected)."""

    async def publish(self, channel: str, payload: bytes) -> int:
        """Publish; return how many subscribers received it. Raises `HubUnavailable`."""

    def publish_start(self, channel: str, payload: bytes) -> Publication:
        """Publish now, in the order of the calls (to this and to `publish` and
        `publish_nowait`), and return what tells its outcome. Raises `HubUnavailable`."""

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        """Publish without waiting for the outcome (in order with `publish`). Raises
        `HubUnavailable` when disconnected; a later failure is the connection's loss."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe on the current connection. Raises `HubUnavailable`."""

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe on the current connection. Raises `HubUnavailable`."""

    async def put_members(self, group: str, node_id: str, members: Collection[str], lease: float) -> None:
        """Store `node_id`'s members of `group` (none: remove them) for `lease` seconds."""

    async def put_node(self, node_id: str, lease: float) -> None:
        """Record that `node_id` is alive for `lease` seconds (0: it is gone)."""

    async def node_alive(self, node_id: str) -> bool:
        """Whether `node_id`'s lease is current."""

    async def members(self, group: str) -> dict[str, set[str]]:
        """Every node's current members of `group`, by node id. Raises `HubUnavailable`."""
