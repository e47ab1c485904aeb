"""The hub's scenarios, against the in-process broker and against a real Redis.

Each scenario runs two or three `Hub` nodes in one process, over one shared `memory://`
bus or one real `redis-server`, under asyncio and under trio. The local sessions are fakes
that implement `LocalSession`: that is all the hub ever uses of a session, the adapters'
sessions are tested in `tests/trio` and `tests/asyncio`, and a fake lets a test decide how
the session's peer answers (a value, an error, never, or too slowly) without sockets.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import anyio
import attrs
import pytest
import trio.testing

from benchmarks.hub.redis import RedisServer
from session_core import Backoff, Method, MethodNotFound, ProtocolErrorResponse, RemoteError, SessionClosed
from session_hub import (
    QUEUE_FULL_CLOSE_CODE,
    Hub,
    HubConfig,
    HubUnavailable,
    MessageTooLarge,
    SessionNotFound,
    open_hub,
)
from session_hub._memory import MemoryBroker, bus_for

CONFIG = HubConfig(
    lease=1.0,
    canary_interval=0.1,
    canary_timeout=0.6,
    operation_timeout=0.5,
    backoff=Backoff(initial=0.02, max_delay=0.2),
    request_timeout=5.0,
    queue_size=8,
)


@attrs.frozen
class Point:
    x: int
    y: int


move = Method("move", request=Point, response=Point, error=str)
chat = Method("chat", request=str, response=None, error=None)
unknown = Method("unknown", request=None, response=None, error=None)

Answer = Callable[[str, Any], Awaitable[Any]]


async def peer(name: str, data: Any) -> Any:
    """How the fake sessions' peers answer (raw JSON in and out, as over the wire)."""
    if name != "move":
        raise ProtocolErrorResponse.from_code(-32601, "method not found")
    if data["x"] < 0:
        raise RemoteError("negative")
    if data["x"] == 99:
        await anyio.sleep_forever()
    return {"x": data["x"] + 1, "y": data["y"]}


class FakeSession:
    """A `LocalSession` whose peer is the function `peer`."""

    def __init__(self, hub: Hub, *, blocked: bool = False) -> None:
        self.id = hub.new_session_id()
        self.closed = False
        self.close_code = 0
        self.received: list[tuple[str, Any]] = []
        self.cancelled = 0  # requests given up by their caller (cancelled)
        self.unblock = anyio.Event()
        if not blocked:
            self.unblock.set()
        self._scopes: set[anyio.CancelScope] = set()

    async def notify(self, method: Method[Any, Any, Any], data: Any) -> None:
        if self.closed:
            raise SessionClosed(self.close_code)
        await self.unblock.wait()  # a peer that does not read
        self.received.append((method.name, method.unstructure_request(data)))

    async def request(self, method: Method[Any, Any, Any], data: Any, *, timeout: float | None = None) -> Any:
        if self.closed:
            raise SessionClosed(self.close_code)
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                with anyio.fail_after(timeout):
                    return method.structure_response(
                        await peer(method.name, method.unstructure_request(data))
                    )
            except anyio.get_cancelled_exc_class():
                if not scope.cancel_called:  # not closed: the request was given up
                    self.cancelled += 1
                raise
            finally:
                self._scopes.discard(scope)
        raise SessionClosed(self.close_code, "closed")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = True
        self.close_code = code
        for scope in self._scopes:
            scope.cancel()


_bus_names = itertools.count()


def _url(broker: str, request: pytest.FixtureRequest) -> str:
    if broker == "memory":
        return f"memory://test-{next(_bus_names)}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@asynccontextmanager
async def cluster(url: str, count: int, config: HubConfig = CONFIG) -> AsyncIterator[list[Hub]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(open_hub(url, config=config)) for _ in range(count)]


async def attached(hub: Hub, group: str | None = None, **kwargs: Any) -> FakeSession:
    session = FakeSession(hub, **kwargs)
    hub.attach(session)
    if group is not None:
        await hub.join(session, group)
    return session


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


def run(
    backend: str, test: Callable[[], Awaitable[None]], *, autojump: bool = False, limit: float = 20
) -> None:
    async def guarded() -> None:
        with anyio.fail_after(limit):
            await test()

    options: dict[str, Any] = {}
    if autojump:
        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    anyio.run(guarded, backend=backend, backend_options=options)


brokers = pytest.mark.parametrize("broker", ["memory", "redis"])
backends = pytest.mark.parametrize("backend", ["asyncio", "trio"])


@brokers
@backends
def test_broadcast_reaches_every_member_exactly_once(
    broker: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        async with cluster(url, 3) as hubs:
            members = [await attached(hub, "room") for hub in hubs for _ in range(2)]
            outsiders = [await attached(hub) for hub in hubs]
            excluded = members[3]
            await hubs[0].broadcast("room", chat, "hello", exclude=[excluded.id])
            # Messages from one node on one channel keep their order: once the marker has
            # arrived everywhere, nothing of the first broadcast is still on its way.
            await hubs[0].broadcast("room", chat, "marker")
            await until(lambda: all(("chat", "marker") in m.received for m in members))
            for member in members:
                expected = (
                    [("chat", "marker")] if member is excluded else [("chat", "hello"), ("chat", "marker")]
                )
                assert member.received == expected
            assert all(o.received == [] for o in outsiders)
            assert all(h.lost_messages == 0 for h in hubs)

    run(backend, scenario)


@brokers
@backends
def test_notify_and_request_cross_nodes_typed(
    broker: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        async with cluster(url, 2) as (a, b):
            target = await attached(b)
            near = await attached(a)
            await a.notify(target.id, chat, "hi")
            await until(lambda: target.received == [("chat", "hi")])
            for hub in (a, b):  # from the other node, and from the holding node itself
                assert await hub.request(target.id, move, Point(1, 2), timeout=5) == Point(2, 2)
                with pytest.raises(RemoteError) as info:
                    await hub.request(target.id, move, Point(-1, 0), timeout=5)
                assert info.value.error == "negative"
                with pytest.raises(MethodNotFound):
                    await hub.request(target.id, unknown, None, timeout=5)
                with pytest.raises(TimeoutError):
                    await hub.request(target.id, move, Point(99, 0), timeout=0.3)
            assert await b.request(near.id, move, Point(5, 5)) == Point(6, 5)

    run(backend, scenario)


@brokers
@backends
def test_session_closed_and_not_found(broker: str, backend: str, request: pytest.FixtureRequest) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        async with cluster(url, 2) as (a, b):
            target = await attached(b)

            async def close_soon() -> None:
                await anyio.sleep(0.2)
                await target.close(1001, "bye")
                b.detach(target)

            async with anyio.create_task_group() as tg:
                tg.start_soon(close_soon)
                with pytest.raises(SessionClosed) as info:
                    await a.request(target.id, move, Point(99, 0), timeout=10)
                assert info.value.code == 1001
            gone = [target.id, "ghost.1", f"{a.node_id}.999"]
            for session_id in gone:
                started = anyio.current_time()
                with pytest.raises(SessionNotFound):
                    await a.request(session_id, move, Point(1, 1), timeout=10)
                if session_id != target.id:  # a notification to a live node is not answered
                    with pytest.raises(SessionNotFound):
                        await a.notify(session_id, chat, "anyone?")
                assert anyio.current_time() - started < 1.0  # at once, not after the timeout

    run(backend, scenario)


@brokers
@backends
def test_cancelling_a_request_cancels_it_on_the_holding_node(
    broker: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        async with cluster(url, 2) as (a, b):
            target = await attached(b)
            with anyio.move_on_after(0.3) as scope:
                await a.request(target.id, move, Point(99, 0), timeout=30)  # never answered
            assert scope.cancelled_caught
            # The holding node cancels the session's request (an adapter's session then
            # sends `$/cancel` to its peer), long before the request's own timeout.
            await until(lambda: target.cancelled == 1, timeout=3)
            assert b._incoming_requests == 0
            # And the node still serves the next request as before.
            assert await a.request(target.id, move, Point(1, 1), timeout=5) == Point(2, 1)
            assert target.cancelled == 1

    run(backend, scenario)


@brokers
@backends
def test_notify_to_a_session_just_ended_is_reported_by_its_node(
    broker: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        async with cluster(url, 2) as (a, b):
            target = await attached(b)
            await a.notify(target.id, chat, "before")
            await until(lambda: target.received == [("chat", "before")])
            await target.close(1000)
            b.detach(target)
            await a.notify(target.id, chat, "after")  # fire and forget: returns
            await until(lambda: a.undelivered_notifications == 1, timeout=3)
            # The node now knows the session ended: at once, without a round trip.
            with pytest.raises(SessionNotFound):
                await a.notify(target.id, chat, "again")
            with pytest.raises(SessionNotFound):
                await a.request(target.id, move, Point(1, 1), timeout=10)
            assert target.received == [("chat", "before")]
            assert a.lost_messages == b.lost_messages == 0

    run(backend, scenario)


def test_open_hub_redis_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # coredis not installed: `import coredis` fails as it would (a None entry in
    # sys.modules raises ModuleNotFoundError naming it).
    for name in [n for n in sys.modules if n == "coredis" or n.startswith("coredis.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "coredis", None)
    monkeypatch.delitem(sys.modules, "session_hub._redis", raising=False)

    async def scenario() -> None:
        with pytest.raises(ImportError, match=r"pip install 'session-py\[redis\]'") as info:
            async with open_hub("redis://127.0.0.1:1/0"):
                pass
        assert info.value.name == "coredis"
        assert info.value.__cause__ is None and info.value.__suppress_context__
        async with open_hub("memory://") as hub:  # the in-process hub needs nothing
            assert hub.connected

    run("asyncio", scenario)


def test_command_line_without_the_redis_extra_says_how_to_install_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from session_cli import main  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "coredis", None)
    with pytest.raises(SystemExit) as info:
        main(["serve", "app:on_session", "--hub", "redis://127.0.0.1:6379/0"])
    assert info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == [
        "session-py serve: error: argument --hub: a Redis hub needs the redis extra: "
        "pip install 'session-py[redis]'"
    ]


@brokers
@backends
def test_members_converge_and_follow_leave_and_detach(
    broker: str, backend: str, request: pytest.FixtureRequest
) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        async with cluster(url, 3) as hubs:
            sessions = [await attached(hub, "g") for hub in hubs]
            ids = {s.id for s in sessions}
            for hub in hubs:
                assert await hub.members("g") == ids
            await hubs[0].leave(sessions[0], "g")
            hubs[1].detach(sessions[1])
            await until(lambda: True)
            for hub in hubs:
                with anyio.fail_after(3):
                    while await hub.members("g") != {sessions[2].id}:
                        await anyio.sleep(0.02)
            assert await hubs[0].members("nobody") == set()

    run(backend, scenario)


@backends
def test_slow_session_is_closed_with_1013_and_others_unaffected(backend: str) -> None:
    async def scenario() -> None:
        async with cluster("memory://", 1) as (hub,):
            slow = await attached(hub, "g", blocked=True)
            fast = await attached(hub, "g")
            for i in range(CONFIG.queue_size + 3):
                await hub.broadcast("g", chat, str(i))
            await until(lambda: len(fast.received) == CONFIG.queue_size + 3)
            await until(lambda: slow.closed)
            assert slow.close_code == QUEUE_FULL_CLOSE_CODE
            assert await hub.members("g") == {fast.id}

    run(backend, scenario)


@brokers
def test_message_too_large_is_refused_before_publishing(broker: str, request: pytest.FixtureRequest) -> None:
    url = _url(broker, request)

    async def scenario() -> None:
        config = attrs.evolve(CONFIG, max_message_size=1000)
        async with cluster(url, 2, config) as (a, b):
            member = await attached(b, "g")
            with pytest.raises(MessageTooLarge):
                await a.broadcast("g", chat, "x" * 2000)
            with pytest.raises(MessageTooLarge):
                await a.notify(member.id, chat, "x" * 2000)
            await a.broadcast("g", chat, "small")
            await until(lambda: member.received == [("chat", "small")])
            assert b.lost_messages == 0  # the refused ones used no sequence number

    run("asyncio", scenario)


def test_memory_node_that_stops_renewing_drops_out_within_its_lease() -> None:
    async def scenario() -> None:
        async with cluster("memory://lease-test", 1) as (hub,):
            member = await attached(hub, "g")
            # Another node writes its presence once and never renews it (it died).
            dead = MemoryBroker(bus_for("memory://lease-test"))
            async with dead.context():
                await dead.put_members("g", "dead", {"dead.1"}, CONFIG.lease)
            start = anyio.current_time()
            assert await hub.members("g") == {member.id, "dead.1"}
            while "dead.1" in await hub.members("g"):
                await anyio.sleep(0.05)
            assert anyio.current_time() - start <= CONFIG.lease + 0.1

    run("trio", scenario, autojump=True)


def test_memory_deaf_subscription_is_detected_by_its_canary() -> None:
    async def scenario() -> None:
        async with cluster("memory://deaf-test", 2) as (a, b):
            target = await attached(b)
            # The subscription goes deaf without any error (python-socketio #1581).
            bus = b._broker._bus  # type: ignore[attr-defined]
            bus.subscribers[b._node.inbox].discard(b._broker)
            await anyio.sleep(CONFIG.canary_timeout + 2 * CONFIG.canary_interval)
            await a.notify(target.id, chat, "heard again")
            await until(lambda: target.received == [("chat", "heard again")])

    run("trio", scenario, autojump=True)


@backends
def test_redis_killed_and_restarted_mid_traffic(backend: str, redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async with cluster(redis_server.url, 2) as (a, b):
            far = await attached(b, "g")
            near = await attached(a, "g")
            await a.broadcast("g", chat, "before")
            await until(lambda: far.received == [("chat", "before")])

            async def hanging_request() -> None:
                started = anyio.current_time()
                with pytest.raises(HubUnavailable):
                    await a.request(far.id, move, Point(99, 0), timeout=30)
                assert anyio.current_time() - started < 3  # failed at once, not at the timeout

            async with anyio.create_task_group() as tg:
                tg.start_soon(hanging_request)
                await anyio.sleep(0.2)
                redis_server.kill()
            await until(lambda: not a.connected and not b.connected)
            started = anyio.current_time()
            with pytest.raises(HubUnavailable):
                await a.request(far.id, move, Point(1, 1), timeout=30)
            with pytest.raises(HubUnavailable):
                await a.notify(far.id, chat, "during")
            with pytest.raises(HubUnavailable):
                await a.members("g")
            with pytest.raises(HubUnavailable):
                await a.broadcast("g", chat, "during")  # the local member still gets it
            assert anyio.current_time() - started < 1
            await a.notify(near.id, chat, "local")
            await until(lambda: ("chat", "local") in near.received)
            assert ("chat", "during") in near.received

            redis_server.start()
            await until(lambda: a.connected and b.connected, timeout=10)
            with anyio.fail_after(3):  # presence re-asserted by both nodes (Redis came back empty)
                while await a.members("g") != {far.id, near.id}:
                    await anyio.sleep(0.05)
            await a.broadcast("g", chat, "after")
            await until(lambda: far.received[-1:] == [("chat", "after")])
            assert b.lost_messages >= 1  # "during" never reached b: counted, not silent
            assert await a.request(far.id, move, Point(1, 1), timeout=5) == Point(2, 1)

    run(backend, scenario, limit=30)


@backends
def test_client_kill_pubsub_recovers_by_itself(backend: str, redis_server: RedisServer) -> None:
    async def scenario() -> None:
        async with cluster(redis_server.url, 2) as (a, b):
            far = await attached(b, "g")
            assert redis_server.command("CLIENT", "KILL", "TYPE", "pubsub").startswith(b":")  # how many
            await anyio.sleep(0.3)
            await until(lambda: a.connected and b.connected, timeout=10)
            with anyio.fail_after(5):
                while True:  # sent until one gets through once the subscriptions are back
                    with suppress(HubUnavailable):
                        await a.broadcast("g", chat, "again")
                    if ("chat", "again") in far.received:
                        break
                    await anyio.sleep(0.05)
            assert await a.request(far.id, move, Point(1, 1), timeout=5) == Point(2, 1)

    run(backend, scenario, limit=30)


@backends
def test_redis_down_at_start_then_up(backend: str, redis_server: RedisServer) -> None:
    redis_server.kill()

    async def scenario() -> None:
        async with cluster(redis_server.url, 1) as (hub,):
            assert not hub.connected
            member = await attached(hub, "g")  # local membership works without the broker
            with pytest.raises(HubUnavailable):
                await hub.request("elsewhere.1", move, Point(1, 1), timeout=30)
            redis_server.start()
            await until(lambda: hub.connected, timeout=10)
            with anyio.fail_after(3):
                while await hub.members("g") != {member.id}:
                    await anyio.sleep(0.05)

    run(backend, scenario, limit=30)


_NODE_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from session_hub import HubConfig, open_hub

    class Session:
        def __init__(self, id): self.id, self.closed = id, False
        async def notify(self, method, data): pass
        async def request(self, method, data, *, timeout=None): return None
        async def close(self, code=1000, reason=""): self.closed = True

    async def main():
        async with open_hub(sys.argv[1], config=HubConfig(lease=1.0)) as hub:
            session = Session(hub.new_session_id())
            hub.attach(session)
            await hub.join(session, "g")
            print(session.id, flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


def test_redis_node_killed_drops_out_within_its_lease(redis_server: RedisServer) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _NODE_SCRIPT, redis_server.url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert process.stdout is not None
        remote_id = process.stdout.readline().decode().strip()

        async def scenario() -> None:
            async with cluster(redis_server.url, 1) as (hub,):
                assert remote_id in await hub.members("g")
                process.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                while remote_id in await hub.members("g"):
                    await anyio.sleep(0.05)
                assert time.monotonic() - killed <= 1.0 + 0.3  # the lease, and a little slack
                with pytest.raises(SessionNotFound):
                    await hub.request(remote_id, move, Point(1, 1), timeout=10)

        run("asyncio", scenario)
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_open_hub_refuses_unknown_schemes() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="unsupported hub URL"):
            async with open_hub("amqp://localhost"):
                pass

    run("asyncio", scenario)


def test_an_exception_in_the_block_comes_out_unwrapped() -> None:
    async def scenario() -> None:
        with pytest.raises(KeyError):
            async with open_hub():
                raise KeyError("mine")

    run("trio", functools.partial(scenario))
