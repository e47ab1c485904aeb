"""The Redis broker, through coredis (anyio: the same code under trio and asyncio).

- One inbox channel per node (direct notifications, requests, replies, canaries), one
  channel per group, subscribed only while the node has a member in it.
- Presence: per group, a set of node ids (`<prefix>groupnodes:<group>`), and per (group,
  node) the set of that node's members (`<prefix>members:<group>:<node>`) under a lease
  (PEXPIRE); per node a key `<prefix>alive:<node>` under the same lease. They are written
  by Lua scripts so that a reader never sees half an update.
- The subscription runs on its own connection with no retry of coredis's own: this module
  sees every loss, tells the hub (which counts and reports), waits the hub's backoff, and
  subscribes again to everything.
"""

from __future__ import annotations

import logging
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskStatus

with warnings.catch_warnings():
    # coredis builds sets that mix `b"PONG"` and `"PONG"` (equal hashes): under `python -bb`
    # merely loading its modules raises BytesWarning. Not ours to fix; not a bug either.
    warnings.simplefilter("ignore", BytesWarning)
    import coredis
    import coredis.exceptions
    import coredis.patterns.pipeline  # `pipeline()` would import it later, unfiltered
    from coredis.retry import NoRetryPolicy

from ._broker import BrokerEvents
from ._errors import HubUnavailable
from ._node import HubConfig

logger = logging.getLogger("session_hub")

# KEYS: members key, index key; ARGV: node id, lease in ms, members...
_PUT_MEMBERS = """
redis.call('DEL', KEYS[1])
if #ARGV > 2 then
  for i = 3, #ARGV, 1000 do
    redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('SADD', KEYS[2], ARGV[1])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"""

# KEYS: index key; ARGV: members key prefix. Returns node, members, node, members...
_MEMBERS = """
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local members = redis.call('SMEMBERS', ARGV[1] .. node)
  if #members == 0 then
    redis.call('SREM', KEYS[1], node)
  else
    out[#out + 1] = node
    out[#out + 1] = members
  end
end
return out
"""

#: What coredis raises when Redis cannot be reached or the connection breaks.
_BROKER_ERRORS = (coredis.exceptions.RedisError, OSError, TimeoutError)


class _Publish:
    """One PUBLISH waiting in the outbox, and its outcome."""

    __slots__ = ("channel", "count", "done", "error", "payload")

    def __init__(self, channel: str, payload: bytes) -> None:
        self.channel = channel
        self.payload = payload
        self.done = anyio.Event()
        self.count = 0
        self.error: HubUnavailable | None = None


class RedisBroker:
    """One node's connections to Redis: a subscription, and a pool for commands."""

    def __init__(self, url: str, config: HubConfig) -> None:
        self._config = config
        self._prefix = config.prefix
        self._client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, retry_policy=NoRetryPolicy(), connect_timeout=config.operation_timeout
        )
        parsed = urllib.parse.urlsplit(url)
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 6379
        self._pubsub: Any = None
        self._connected = False
        self._scope: anyio.CancelScope | None = None
        # PUBLISHes made while one is on its way leave together in one pipeline: a command
        # through coredis costs about 300 us of CPU, a pipeline of ten about 600 us.
        self._outbox: list[_Publish] = []
        self._outbox_ready = anyio.Event()
        self._publishing = False  # the publisher task runs

    @property
    def connected(self) -> bool:
        """Whether the subscription is up and subscribed to every channel."""
        return self._connected

    @asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        """Open and close the client's connection pool."""
        async with self._client:
            yield

    async def run(self, events: BrokerEvents, *, task_status: TaskStatus[None]) -> None:
        """Subscribe and deliver messages; on any loss, report, back off and start again.

        The publisher (the outbox's task) runs beside it for as long.
        """
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._publisher)
            await self._subscriber(events, task_status)

    async def _subscriber(self, events: BrokerEvents, task_status: TaskStatus[None]) -> None:
        started = False
        while True:
            reason = "closed"
            pubsub = None
            try:
                with anyio.CancelScope() as self._scope:
                    # A plain TCP connection first: a Redis that is down fails here, fast
                    # and cleanly (coredis 6.9 leaks the streams of a connection that
                    # fails to connect, and logs a traceback for each attempt).
                    with anyio.fail_after(self._config.operation_timeout):
                        probe = await anyio.connect_tcp(self._host, self._port)
                    await probe.aclose()
                    pubsub = self._client.pubsub(retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True)
                    async with pubsub:
                        channels = events.channels()
                        with anyio.fail_after(self._config.operation_timeout):
                            await pubsub.subscribe(*channels)
                        self._pubsub = pubsub
                        self._connected = True
                        events.on_connected(channels)
                        if not started:
                            started = True
                            task_status.started()
                        while True:
                            message = await pubsub.get_message()
                            if message is not None and message["type"] == "message":
                                channel = message["channel"]
                                if isinstance(channel, bytes):
                                    channel = channel.decode()
                                data = message["data"]
                                events.on_message(
                                    channel, data if isinstance(data, bytes) else str(data).encode()
                                )
                if self._scope.cancel_called:
                    reason = "reconnecting on request"
            except Exception as exc:  # coredis raises them in (nested) exception groups
                reason = _describe(exc)
            finally:
                # coredis 6.9 leaves its pubsub's memory streams open when the connection
                # fails while it subscribes; closing them twice is harmless.
                for name in ("_send_stream", "_receive_stream"):
                    stream = getattr(pubsub, name, None)
                    if stream is not None:
                        stream.close()
            self._pubsub = None
            if self._connected:
                self._connected = False
                events.on_disconnected(reason)
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(events.backoff())

    def reconnect(self) -> None:
        """Drop the subscription; `run` makes a new one."""
        if self._scope is not None:
            self._scope.cancel()

    async def _command(self, command: Any) -> Any:
        if not self._connected:
            # Fail at once while disconnected, without a connection attempt per call.
            raise HubUnavailable("redis: not connected")
        try:
            with anyio.fail_after(self._config.operation_timeout):
                return await command
        except _BROKER_ERRORS as exc:
            raise HubUnavailable(f"redis: {_describe(exc)}") from None

    async def publish(self, channel: str, payload: bytes) -> int:
        """PUBLISH; return how many subscribers received it.

        Publishes leave in the order of the calls (one task sends them, a batch at a time),
        so that the sequence numbers of a channel reach Redis in order.
        """
        if not (self._connected and self._publishing):
            raise HubUnavailable("redis: not connected")
        item = _Publish(channel, payload)
        self._outbox.append(item)
        self._outbox_ready.set()
        await item.done.wait()
        if item.error is not None:
            raise item.error
        return item.count

    async def _publisher(self) -> None:
        self._publishing = True
        batch: list[_Publish] = []
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready = anyio.Event()
                batch, self._outbox = self._outbox, []
                try:
                    if len(batch) == 1:
                        item = batch[0]
                        item.count = await self._command(self._client.publish(item.channel, item.payload))
                    elif batch:
                        counts = await self._command(self._pipeline(batch))
                        for item, count in zip(batch, counts, strict=True):
                            item.count = count
                except HubUnavailable as exc:
                    for item in batch:
                        item.error = exc
                except Exception as exc:
                    # Not a broker failure: a bug. Its callers fail; the publisher goes on,
                    # or every later publish of this node would wait forever.
                    logger.exception("redis: publishing failed")
                    for item in batch:
                        item.error = HubUnavailable(f"redis: {_describe(exc)}")
                for item in batch:
                    item.done.set()
        finally:
            # The hub is closing: nobody may be left waiting for a publish that never leaves.
            self._publishing = False
            closed = HubUnavailable("redis: the hub is closed")
            for item in (*batch, *self._outbox):
                if not item.done.is_set():
                    item.error = closed
                    item.done.set()
            self._outbox.clear()

    async def _pipeline(self, batch: list[_Publish]) -> list[int]:
        async with self._client.pipeline(transaction=False) as pipe:
            replies = [pipe.publish(item.channel, item.payload) for item in batch]
        return [await reply for reply in replies]

    async def subscribe(self, channel: str) -> None:
        """SUBSCRIBE on the current subscription connection."""
        pubsub = self._pubsub
        if pubsub is None or not self._connected:
            raise HubUnavailable("redis: not connected")
        await self._command(pubsub.subscribe(channel))

    async def unsubscribe(self, channel: str) -> None:
        """UNSUBSCRIBE on the current subscription connection."""
        pubsub = self._pubsub
        if pubsub is not None and self._connected:
            await self._command(pubsub.unsubscribe(channel))

    async def put_members(self, group: str, node_id: str, members: Collection[str], lease: float) -> None:
        """Replace `node_id`'s members of `group`, under a lease of `lease` seconds."""
        keys = [f"{self._prefix}members:{group}:{node_id}", f"{self._prefix}groupnodes:{group}"]
        args: list[str | int] = [node_id, max(1, int(lease * 1000)), *sorted(members)]
        await self._command(self._client.eval(_PUT_MEMBERS, keys=keys, args=args))

    async def put_node(self, node_id: str, lease: float) -> None:
        """Mark `node_id` alive for `lease` seconds (0: remove the mark)."""
        key = f"{self._prefix}alive:{node_id}"
        if lease > 0:
            await self._command(self._client.set(key, b"1", px=max(1, int(lease * 1000))))
        else:
            await self._command(self._client.delete([key]))

    async def node_alive(self, node_id: str) -> bool:
        """Whether `node_id`'s lease is current."""
        count: int = await self._command(self._client.exists([f"{self._prefix}alive:{node_id}"]))
        return count > 0

    async def members(self, group: str) -> dict[str, set[str]]:
        """Every node's members of `group` whose lease is current."""
        reply = await self._command(
            self._client.eval(
                _MEMBERS, keys=[f"{self._prefix}groupnodes:{group}"], args=[f"{self._prefix}members:{group}:"]
            )
        )
        result: dict[str, set[str]] = {}
        for node, members in zip(reply[::2], reply[1::2], strict=True):
            result[_text(node)] = {_text(m) for m in members}
        return result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _describe(exc: BaseException) -> str:
    # coredis's errors arrive wrapped in the exception groups of its task groups.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
