"""The hub through both adapters, in one process: `serve(..., hub=hub)`, `session.id`,
`join`/`leave`, and every kind of message, over real sockets.

The in-process hub (`open_hub()`) with one node, and two nodes on one shared `memory://`
bus (what the Redis cluster tests do across processes, here with nothing to install).
The application is `tests/hub/apps.py`, the one the cluster tests run in workers.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
import trio

import session_asyncio
import session_trio
from session_core import LocalProtocolError, RemoteError, SessionClosed
from session_hub import Hub, HubConfig, SessionNotFound, open_hub

from .apps import ASK, BROADCAST, CHAT, FAIL, HANG, JOIN, LEAVE, MEMBERS, NOTIFY, WHOAMI, Client, on_session

ADAPTERS = ["trio", "asyncio"]
MODULES: dict[str, Any] = {"trio": session_trio, "asyncio": session_asyncio}
CONFIG = HubConfig(lease=1.0, request_timeout=5.0)


def _run(adapter: str, main: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        with anyio.fail_after(20):  # nothing hangs
            await main()

    anyio.run(bounded, backend=adapter)


@asynccontextmanager
async def _serving(
    adapter: str,
    handler: Callable[[Any], Awaitable[object]],
    hub: Hub | None,
    *,
    port: int = 0,
    reuse_port: bool = False,
) -> AsyncIterator[int]:
    """Serve `handler` with `hub` on loopback; yield the port."""
    if adapter == "trio":
        async with trio.open_nursery() as nursery:
            serve = functools.partial(
                session_trio.serve, handler, "127.0.0.1", port, hub=hub, reuse_port=reuse_port
            )
            listeners = await nursery.start(serve)
            yield listeners[0].socket.getsockname()[1]
            nursery.cancel_scope.cancel()
    else:
        server = await session_asyncio.serve(handler, "127.0.0.1", port, hub=hub, reuse_port=reuse_port)
        async with server:
            yield server.sockets[0].getsockname()[1]


async def _client(stack: AsyncExitStack, adapter: str, port: int, name: str) -> Client:
    session = await stack.enter_async_context(MODULES[adapter].connect(f"ws://127.0.0.1:{port}/"))
    return Client(session, name)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_one_node_every_message(adapter: str) -> None:
    async def main() -> None:
        async with (
            MODULES[adapter].open_hub(config=CONFIG) as hub,
            _serving(adapter, on_session, hub) as port,
            AsyncExitStack() as stack,
        ):
            alice, bob, carol = [await _client(stack, adapter, port, n) for n in ("alice", "bob", "carol")]
            a = await alice.session.request(JOIN, "room")
            b = await bob.session.request(JOIN, "room")
            c = await carol.session.request(JOIN, "other")
            assert len({a, b, c}) == 3 and all(i.startswith(hub.node_id + ".") for i in (a, b, c))
            assert await hub.members("room") == {a, b}

            # Broadcast: every member exactly once, nobody else; `exclude` honoured.
            await hub.broadcast("room", CHAT, "hello")
            assert await alice.wait_chats(1) == ["hello"]
            assert await bob.wait_chats(1) == ["hello"]
            await carol.session.request(BROADCAST, ["room", "from carol"])  # a member's node too
            await hub.broadcast("room", CHAT, "not alice", exclude={a})
            assert await bob.wait_chats(3) == ["hello", "from carol", "not alice"]
            assert alice.chats == ["hello", "from carol"] and carol.chats == []

            # Direct notification and requests, typed as a local request's.
            await hub.notify(c, CHAT, "psst")
            assert await carol.wait_chats(1) == ["psst"]
            assert await hub.request(a, WHOAMI, None) == "alice"
            with pytest.raises(RemoteError) as raised:
                await hub.request(b, FAIL, None)
            assert raised.value.error == "bob fails"
            with pytest.raises(TimeoutError):
                await hub.request(c, HANG, None, timeout=0.2)
            assert await bob.session.request(ASK, [a, "whoami", 5]) == "result:alice"

            # An id no node holds: SessionNotFound at once, not after the timeout.
            for unknown in (f"{hub.node_id}.999", "no-such-node.1", "garbage"):
                started = time.monotonic()
                with pytest.raises(SessionNotFound):
                    await hub.request(unknown, WHOAMI, None, timeout=30)
                with pytest.raises(SessionNotFound):
                    await hub.notify(unknown, CHAT, "x")
                assert time.monotonic() - started < 1

            # The session ends while a request waits: SessionClosed, at once.
            async def close_carol() -> None:
                while not carol.hanging:
                    await anyio.sleep(0.01)
                await carol.session.close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(close_carol)
                with pytest.raises(SessionClosed):
                    await hub.request(c, HANG, None, timeout=30)

            # Leaving, and ending: a session that ends leaves all its groups.
            await alice.session.request(LEAVE, "room")
            assert await hub.members("room") == {b}
            await bob.session.close()
            with anyio.fail_after(5):
                while await hub.members("room"):
                    await anyio.sleep(0.01)
            assert await alice.session.request(MEMBERS, "other") == []
            assert await alice.session.request(ASK, [b, "whoami", 5]) == "SessionNotFound"

    _run(adapter, main)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_two_nodes_in_one_process(adapter: str) -> None:
    # Two hubs on one named in-process bus: the cross-node paths (envelopes through the
    # broker, replies routed back) with nothing to install.
    bus = f"memory://{uuid.uuid4().hex}"

    async def main() -> None:
        async with AsyncExitStack() as stack:
            hubs = [
                await stack.enter_async_context(MODULES[adapter].open_hub(bus, config=CONFIG)) for _ in "ab"
            ]
            ports = [await stack.enter_async_context(_serving(adapter, on_session, h)) for h in hubs]
            one = await _client(stack, adapter, ports[0], "one")
            two = await _client(stack, adapter, ports[1], "two")
            a = await one.session.request(JOIN, "room")
            b = await two.session.request(JOIN, "room")
            assert a.startswith(hubs[0].node_id) and b.startswith(hubs[1].node_id)
            for hub in hubs:
                assert await hub.members("room") == {a, b}
            await one.session.request(BROADCAST, ["room", "hi all"])
            assert await one.wait_chats(1) == ["hi all"]
            assert await two.wait_chats(1) == ["hi all"]
            await one.session.request(NOTIFY, [b, "direct"])
            assert await two.wait_chats(2) == ["hi all", "direct"]
            assert await one.session.request(ASK, [b, "whoami", 5]) == "result:two"
            assert await one.session.request(ASK, [b, "fail", 5]) == "RemoteError:two fails"
            assert await one.session.request(ASK, [b, "hang", 0.2]) == "TimeoutError"
            assert (
                await two.session.request(ASK, [f"{hubs[0].node_id}.999", "whoami", 30]) == "SessionNotFound"
            )
            await two.session.close()
            assert await one.session.request(ASK, [b, "whoami", 30]) == "SessionNotFound"
            with anyio.fail_after(5):
                while await hubs[0].members("room") != {a}:
                    await anyio.sleep(0.01)

    _run(adapter, main)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_cancelled_cross_node_request_sends_cancel_to_the_peer(adapter: str) -> None:
    # The caller of `hub.request` on one node gives up; the node holding the session
    # cancels the session's request, whose peer is sent `$/cancel` (its handler cancelled).
    bus = f"memory://{uuid.uuid4().hex}"

    async def main() -> None:
        async with AsyncExitStack() as stack:
            hubs = [
                await stack.enter_async_context(MODULES[adapter].open_hub(bus, config=CONFIG)) for _ in "ab"
            ]
            port = await stack.enter_async_context(_serving(adapter, on_session, hubs[1]))
            two = await _client(stack, adapter, port, "two")
            b = await two.session.request(JOIN, "room")
            with anyio.move_on_after(0.3):
                await hubs[0].request(b, HANG, None, timeout=30)
            assert two.hanging == 1
            with anyio.fail_after(3):  # long before the request's own 30 s
                while two.cancelled < 1:
                    await anyio.sleep(0.01)
            assert await hubs[0].request(b, WHOAMI, None, timeout=5) == "two"  # still served

    _run(adapter, main)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_reuse_port_shares_a_port_between_servers(adapter: str) -> None:
    bus = f"memory://{uuid.uuid4().hex}"

    async def main() -> None:
        async with AsyncExitStack() as stack:
            hubs = [
                await stack.enter_async_context(MODULES[adapter].open_hub(bus, config=CONFIG)) for _ in "ab"
            ]
            port = await stack.enter_async_context(_serving(adapter, on_session, hubs[0], reuse_port=True))
            same = await stack.enter_async_context(
                _serving(adapter, on_session, hubs[1], port=port, reuse_port=True)
            )
            assert same == port
            ids = [
                await (await _client(stack, adapter, port, str(i))).session.request(JOIN, "g")
                for i in range(16)
            ]
            # The kernel spreads the connections: both servers got some (2 * 2**-16 to fail).
            assert {i.rpartition(".")[0] for i in ids} == {hubs[0].node_id, hubs[1].node_id}
            assert await hubs[0].members("g") == set(ids)

    _run(adapter, main)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_sessions_without_a_hub(adapter: str) -> None:
    ids: list[str] = []
    errors: list[BaseException] = []

    async def plain(session: Any) -> None:
        ids.append(session.id)
        assert session.id == ids[-1]  # stable
        assert session.hub is None
        try:
            await session.join("room")
        except LocalProtocolError as exc:
            errors.append(exc)

    async def main() -> None:
        async with _serving(adapter, plain, None) as port:
            for _ in range(3):
                async with MODULES[adapter].connect(f"ws://127.0.0.1:{port}/") as session:
                    ids.append(session.id)  # a client's session has one too
                    with pytest.raises(LocalProtocolError, match="no hub"):
                        await session.leave("room")
            with anyio.fail_after(5):
                while len(errors) < 3:
                    await anyio.sleep(0.01)

    _run(adapter, main)
    assert len(set(ids)) == 6 and all(isinstance(i, str) and i for i in ids)
    assert all("no hub" in str(e) for e in errors)


def test_both_adapters_export_the_one_hub() -> None:
    assert session_trio.open_hub is session_asyncio.open_hub is open_hub
