"""Our two adapters face each other: a trio server with an asyncio client, and an asyncio
server with a trio client, each loop in its own thread.

Every message kind goes both ways: requests and responses, error responses (the method's
own error and protocol errors), notifications, and the server's requests to its client;
then closing from either side, with a code and a reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from session_core import InvalidRequestData, MethodNotFound, RemoteError, SessionClosed

from .support import (
    ADAPTERS,
    KITS,
    NOT_FOUND_NOPE,
    AddArgs,
    CloseArgs,
    add,
    ask,
    assert_quiet,
    close_me,
    confirmed,
    echo,
    fail,
    nope,
    serve_confirm,
    serving,
    welcome,
)

OTHER = {"trio": "asyncio", "asyncio": "trio"}


@pytest.mark.parametrize("server_adapter", ADAPTERS)
def test_every_message_kind_both_ways_and_the_client_closes(
    server_adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = KITS[OTHER[server_adapter]]
    with serving(server_adapter) as served:

        async def client() -> tuple[list[str], list[Any]]:
            async with kit.connect(served.url + f"cross?client={kit.name}") as session:
                greetings: list[str] = []
                summaries: list[Any] = []
                welcomed, both_confirmed = kit.event(), kit.event()
                serve_confirm(session)

                @session.on_notification(welcome)
                async def _welcome(text: str) -> None:
                    greetings.append(text)
                    welcomed.set()

                @session.on_notification(confirmed)
                async def _confirmed(summary: Any) -> None:
                    summaries.append(summary)
                    if len(summaries) == 2:
                        both_confirmed.set()

                # Client -> server: responses, the method's error, protocol errors.
                assert await session.request(echo, {"x": [1, 2, 3], "s": "é\u2028"}) == {
                    "x": [1, 2, 3],
                    "s": "é\u2028",
                }
                assert await session.request(add, AddArgs(2, 3)) == 5
                with pytest.raises(RemoteError) as failed:
                    await session.request(fail, None)
                assert type(failed.value) is RemoteError
                assert failed.value.error == "boom"
                with pytest.raises(MethodNotFound) as missing:
                    await session.request(nope, "anyone")
                assert (missing.value.code, missing.value.message) == (-32601, "method not found: nope")
                with pytest.raises(InvalidRequestData) as invalid:
                    await session.request("add", {"a": "two", "b": 3})  # raw: bypasses our types
                assert invalid.value.code == -32602
                # Client -> server notifications; server -> client requests (answered,
                # refused with the method's error, and unknown here) and notifications.
                await session.notify(ask, kit.name)
                await session.notify(ask, "refuse")
                await kit.within(5, welcomed.wait())
                await kit.within(5, both_confirmed.wait())
                # The client closes, with a code and a reason.
                await session.close(4000, "client bye")
                assert (session.close_code, session.close_reason) == (4000, "client bye")
                return greetings, summaries

        greetings, summaries = kit.run(client, 15)
        assert greetings == ["hi"]
        expected = {
            kit.name: {"confirm": {"result": f"yes from {kit.name}"}, "nope": NOT_FOUND_NOPE},
            "refuse": {"confirm": {"error": "refused"}, "nope": NOT_FOUND_NOPE},
        }
        # The two notifications are handled concurrently: their order is free.
        assert sorted(summaries, key=str) == sorted(expected.values(), key=str)
        assert dict(served.record.wait("asked", count=2)) == expected
        assert served.record.wait("opened") == [(f"/cross?client={kit.name}",)]
        assert served.record.wait("closed") == [(4000, "client bye")]
    assert_quiet(caplog)


@pytest.mark.parametrize("server_adapter", ADAPTERS)
def test_the_server_closes_with_a_code_and_reason(
    server_adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server closes while the client's request waits: the request fails at once with
    the server's code and reason, and both ends agree on them."""
    kit = KITS[OTHER[server_adapter]]
    with serving(server_adapter) as served:

        async def client() -> None:
            async with kit.connect(served.url) as session:
                with pytest.raises(SessionClosed) as closed:
                    await session.request(close_me, CloseArgs(4001, "server bye"))
                assert (closed.value.code, closed.value.reason) == (4001, "server bye")
                await kit.within(5, session.wait_closed())
                assert (session.close_code, session.close_reason) == (4001, "server bye")
                with pytest.raises(SessionClosed):
                    await session.request(add, AddArgs(1, 1))

        kit.run(client, 15)
        assert served.record.wait("closed") == [(4001, "server bye")]
    assert_quiet(caplog)


@pytest.mark.parametrize("server_adapter", ADAPTERS)
def test_a_server_shutdown_ends_the_client_session_with_1001(
    server_adapter: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Shutting the server down (its loop runs in the other thread) closes its sessions
    with 1001, "going away", which a client of the other adapter sees."""
    kit = KITS[OTHER[server_adapter]]
    with serving(server_adapter) as served:

        async def client() -> None:
            async with kit.connect(served.url) as session:
                assert await session.request(add, AddArgs(1, 2)) == 3
                served.shut_down()
                await kit.within(5, session.wait_closed())
                assert session.close_code == 1001

        kit.run(client, 15)  # (on_session is cancelled by the shutdown: it records no end)
    assert_quiet(caplog)
