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
    from coredis.connection import BaseConnection
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
_BROKER_ERRORS = (
    coredis.exceptions.RedisError,
    OSError,
    TimeoutError,
    # A connection's streams, closed under a command queued as the connection breaks.
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
)


class _Published:
    __slots__ = ("_broker", "_request")

    def __init__(self, broker: RedisBroker, request: Any) -> None:
        self._broker = broker
        self._request = request

    async def result(self) -> int:
        try:
            count = await self._request
        except _BROKER_ERRORS as exc:
            # The publisher connection broke (or Redis does not answer): start again with
            # both, as for a broken subscription; the hub fails what may be lost.
            self._broker.reconnect()
            raise HubUnavailable(f"redis: {_describe(exc)}") from None
        return int(count)


class RedisBroker:
    """One node's connections to Redis: a subscriber, a publisher, and a pool for the rest.

    The subscriber and the publisher are two connections of the broker's own, made with the
    settings of coredis's pool for the URL, and used through coredis's
    documented connection interface (`BaseConnection.send_command`, `create_request`,
    `push_messages`) rather than through `Redis.publish` and `PubSub`: a lone PUBLISH
    through the client costs about 160-220 us of CPU (retry policy, telemetry span, a pool
    lease, a task switch to the publishing task), straight on a connection about 90-120;
    a message read through `PubSub` goes through one more task and stream than one read
    from the connection's push messages. Both connections are replaced together whenever
    either fails.
    """

    def __init__(self, url: str, config: HubConfig) -> None:
        self._config = config
        self._prefix = config.prefix
        self._client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url, retry_policy=NoRetryPolicy(), connect_timeout=config.operation_timeout
        )
        parsed = urllib.parse.urlsplit(url)
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or 6379
        self._sub: BaseConnection | None = None
        self._pub: BaseConnection | None = None
        self._connected = False
        self._scope: anyio.CancelScope | None = None
        # Subscriptions and unsubscriptions waiting for Redis's confirmation, by channel.
        self._acks: dict[tuple[bytes, bytes], list[anyio.Event]] = {}

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
        """Subscribe and deliver messages; on any loss, report, back off and start again."""
        started = False
        while True:
            reason = "closed"
            try:
                with anyio.CancelScope() as self._scope:
                    # A plain TCP connection first: a Redis that is down fails here, fast
                    # and cleanly (coredis 6.9 leaks the streams of a connection that
                    # fails to connect, and logs a traceback for each attempt).
                    with anyio.fail_after(self._config.operation_timeout):
                        probe = await anyio.connect_tcp(self._host, self._port)
                    await probe.aclose()
                    sub, pub = self._new_connection(), self._new_connection()
                    async with anyio.create_task_group() as tg:
                        with anyio.fail_after(self._config.operation_timeout):
                            await tg.start(self._keep, sub)
                            await tg.start(self._keep, pub)
                        tg.start_soon(self._read, sub, events)
                        channels = events.channels()
                        with anyio.fail_after(self._config.operation_timeout):
                            await self._send_and_confirm(sub, b"SUBSCRIBE", channels)
                        self._sub, self._pub = sub, pub
                        self._connected = True
                        events.on_connected(channels)
                        if not started:
                            started = True
                            task_status.started()
                        await anyio.sleep_forever()
                if self._scope.cancel_called:
                    reason = "reconnecting on request"
            except Exception as exc:  # coredis raises them in (nested) exception groups
                reason = _describe(exc)
            self._sub = self._pub = None
            for waiters in self._acks.values():
                for waiter in waiters:
                    waiter.set()  # the waiting subscriber finds the broker disconnected
            self._acks.clear()
            if self._connected:
                self._connected = False
                events.on_disconnected(reason)
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(events.backoff())

    def _new_connection(self) -> BaseConnection:
        # A connection of the pool's kind and settings (address, credentials, TLS,
        # database), owned by this broker rather than leased from the pool.
        pool = self._client.connection_pool
        return pool.connection_class(pool.location, **pool.connection_kwargs)  # type: ignore[no-any-return]

    @staticmethod
    async def _keep(connection: BaseConnection, *, task_status: TaskStatus[None]) -> None:
        # Run a connection; its end, whatever the cause, ends the broker's connection.
        await connection.run(task_status=task_status)
        raise coredis.exceptions.ConnectionError("connection lost")

    async def _read(self, sub: BaseConnection, events: BrokerEvents) -> None:
        # Push messages, in the order Redis sent them: a message is handed to the hub at
        # once (it never blocks), a (un)subscription confirmation wakes who waits for it.
        on_message = events.on_message
        async for push in sub.push_messages:
            kind = push[0]
            if kind == b"message":
                channel = push[1]
                data = push[2]
                on_message(
                    channel.decode() if type(channel) is bytes else str(channel),
                    data if type(data) is bytes else str(data).encode(),
                )
            elif kind in (b"subscribe", b"unsubscribe") and type(push[1]) is bytes:
                key = (kind, push[1])
                waiters = self._acks.get(key)
                if waiters:
                    waiters.pop(0).set()
                    if not waiters:
                        del self._acks[key]
        raise coredis.exceptions.ConnectionError("subscription ended")

    async def _send_and_confirm(self, sub: BaseConnection, command: bytes, channels: list[str]) -> None:
        kind = command.lower()
        waiters = []
        for channel in channels:
            event = anyio.Event()
            self._acks.setdefault((kind, channel.encode()), []).append(event)
            waiters.append(event)
        sub.send_command(command, *channels)
        for event in waiters:
            await event.wait()

    def reconnect(self) -> None:
        """Drop both connections; `run` makes new ones."""
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
        """PUBLISH; return how many subscribers received it (see `publish_start`)."""
        return await self.publish_start(channel, payload).result()

    def publish_start(self, channel: str, payload: bytes) -> _Published:
        """PUBLISH now; the result tells how many subscribers received it.

        Publishes leave in the order of the calls: each is queued on the publisher
        connection at once, and those queued while one is being written leave together
        in one write (coredis's connection writes whatever is queued), so that the
        sequence numbers of a channel reach Redis in order.
        """
        pub = self._pub
        if pub is None or not self._connected:
            raise HubUnavailable("redis: not connected")
        try:
            request = pub.create_request(b"PUBLISH", channel, payload, timeout=self._config.operation_timeout)
        except _BROKER_ERRORS as exc:
            self.reconnect()
            raise HubUnavailable(f"redis: {_describe(exc)}") from None
        return _Published(self, request)

    def publish_nowait(self, channel: str, payload: bytes) -> None:
        """PUBLISH without waiting for Redis's reply (in order with `publish`)."""
        pub = self._pub
        if pub is None or not self._connected:
            raise HubUnavailable("redis: not connected")
        try:
            # Redis is told not to answer (CLIENT REPLY SKIP): nothing to read back, no
            # wake-up. A broken connection ends the broker's connection (`_keep`), which
            # the hub sees and reports.
            pub.create_request(b"PUBLISH", channel, payload, noreply=True)
        except _BROKER_ERRORS as exc:
            self.reconnect()
            raise HubUnavailable(f"redis: {_describe(exc)}") from None

    async def subscribe(self, channel: str) -> None:
        """SUBSCRIBE on the current subscription connection; returns once confirmed."""
        await self._confirmed(b"SUBSCRIBE", channel)

    async def unsubscribe(self, channel: str) -> None:
        """UNSUBSCRIBE on the current subscription connection; returns once confirmed."""
        if self._sub is not None and self._connected:
            await self._confirmed(b"UNSUBSCRIBE", channel)

    async def _confirmed(self, command: bytes, channel: str) -> None:
        sub = self._sub
        if sub is None or not self._connected:
            raise HubUnavailable("redis: not connected")
        try:
            with anyio.fail_after(self._config.operation_timeout):
                await self._send_and_confirm(sub, command, [channel])
        except _BROKER_ERRORS as exc:
            raise HubUnavailable(f"redis: {_describe(exc)}") from None
        if not self._connected:
            raise HubUnavailable("redis: the connection was lost")

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
