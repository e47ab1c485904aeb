"""The `websockets` library (PyPI) as a plain WebSocket peer, speaking the protocol in
hand-written JSON: a client of our servers and a server for our clients, both adapters.

It checks the exact text on the wire: compact JSON, `type` first, ids from 1, the one-word
`errorresponse`, protocol error objects; and what the RFC leaves to libraries: a
permessage-deflate offer declined, fragmented messages reassembled, a ping with a payload
answered with it, close codes and reasons both ways.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from session_core import MethodNotFound, RemoteError, SessionClosed

from .rawpeer import TRANSCRIPT, WELCOME
from .support import (
    ADAPTERS,
    KITS,
    AddArgs,
    Record,
    add,
    ask,
    assert_quiet,
    asyncio_thread,
    confirmed,
    echo,
    fail,
    hang,
    nope,
    run_asyncio,
    serve_confirm,
    serving,
    welcome,
)

NOT_FOUND = '{"code":-32601,"message":"method not found: nope"}'

# -- websockets as a client of our servers ------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_websockets_client_at_our_server(adapter: str, caplog: pytest.LogCaptureFixture) -> None:
    with serving(adapter) as served:

        async def client() -> None:
            # websockets offers permessage-deflate by default: our server declines it.
            async with ws_connect(served.url + "websockets") as ws:
                assert ws.response is not None
                assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
                assert await ws.recv() == WELCOME
                for request, response in TRANSCRIPT:
                    await ws.send(request)
                    assert await ws.recv() == response
                await ws.send('{"type":"request","id":4,"method":"nope","data":"x"}')
                assert await ws.recv() == '{"type":"errorresponse","id":4,"error":' + NOT_FOUND + "}"
                await ws.send('{"type":"request","id":5,"method":"add","data":{"a":"two","b":3}}')
                text = await ws.recv()
                assert isinstance(text, str)
                assert text.startswith(
                    '{"type":"errorresponse","id":5,"error":{"code":-32602,'
                    '"message":"invalid request data for add'
                ), text
                # Key order is free, unknown fields are ignored, and a message may come
                # in fragments.
                await ws.send('{"data":{"a":1,"b":1},"id":6,"method":"add","type":"request","x":0}')
                assert await ws.recv() == '{"type":"response","id":6,"result":2}'
                await ws.send(['{"type":"request",', '"id":7,"method":"add",', '"data":{"a":40,"b":2}}'])
                assert await ws.recv() == '{"type":"response","id":7,"result":42}'
                # A ping with a payload gets it back (websockets checks it).
                pong = await ws.ping(b"are you there")
                async with asyncio.timeout(5):
                    await pong
                # Our server calls the client back: its ids start from 1 too.
                await ws.send('{"type":"notification","method":"ask","data":"websockets"}')
                assert await ws.recv() == '{"type":"request","id":1,"method":"confirm","data":"websockets"}'
                await ws.send('{"type":"response","id":1,"result":"sure"}')
                assert await ws.recv() == '{"type":"request","id":2,"method":"nope","data":"websockets"}'
                await ws.send('{"type":"errorresponse","id":2,"error":' + NOT_FOUND + "}")
                assert await ws.recv() == (
                    '{"type":"notification","method":"confirmed","data":'
                    '{"confirm":{"result":"sure"},"nope":' + NOT_FOUND + "}}"
                )
                # A notification without `data` (as JSON.stringify writes `undefined`).
                await ws.send('{"type":"notification","method":"note"}')
                await ws.send('{"method":"note","data":[1],"type":"notification"}')
                # (Closing at once could lose them: see test_last_words.py.)
                notes = await asyncio.to_thread(served.record.wait, "note", 5.0, 2)
                assert notes == [(None,), ([1],)]
                await ws.close(4000, "websockets bye")
                assert (ws.close_code, ws.close_reason) == (4000, "websockets bye")

        run_asyncio(client, 15)
        assert served.record.wait("closed") == [(4000, "websockets bye")]

        async def closed_by_server() -> None:
            async with ws_connect(served.url) as ws:
                assert await ws.recv() == WELCOME
                await ws.send(
                    '{"type":"request","id":1,"method":"close_me","data":{"code":4001,"reason":"go"}}'
                )
                with pytest.raises(ConnectionClosed):  # (websockets calls only 1000 and 1001 "OK")
                    await ws.recv()
                assert (ws.close_code, ws.close_reason) == (4001, "go")

        run_asyncio(closed_by_server, 15)
        assert served.record.wait("closed", count=2)[1] == (4001, "go")
    assert_quiet(caplog)


# -- websockets as a server for our clients -------------------------------------------------


async def websockets_server_script(ws: ServerConnection, port: int, closer: str) -> tuple[int, str]:
    """What a websockets server expects of our client, text for text. Returns the close
    code and reason it received (or sent, when it closes first)."""
    assert ws.request is not None
    assert ws.request.path == "/websockets?q=1"
    assert ws.request.headers["Host"] == f"127.0.0.1:{port}"
    assert "Sec-WebSocket-Extensions" not in ws.request.headers
    await ws.send(WELCOME)
    # A fragmented notification: our client reassembles it.
    await ws.send(['{"type":"notification",', '"method":"welcome",', '"data":"in pieces"}'])
    # The client's requests, ids from 1.
    for request, response in TRANSCRIPT:
        assert await ws.recv() == request
        await ws.send(response)
    assert await ws.recv() == '{"type":"request","id":4,"method":"nope","data":"x"}'
    await ws.send('{"type":"errorresponse","id":4,"error":' + NOT_FOUND + "}")
    # Our requests to the client: answered, refused, unknown, and with data of a wrong type.
    await ws.send('{"type":"request","id":1,"method":"confirm","data":"websockets"}')
    assert await ws.recv() == '{"type":"response","id":1,"result":"yes from websockets"}'
    await ws.send('{"type":"request","id":2,"method":"confirm","data":"refuse"}')
    assert await ws.recv() == '{"type":"errorresponse","id":2,"error":"refused"}'
    await ws.send('{"type":"request","id":3,"method":"nope","data":null}')
    assert await ws.recv() == '{"type":"errorresponse","id":3,"error":' + NOT_FOUND + "}"
    await ws.send('{"type":"request","id":4,"method":"confirm","data":5}')
    answer = json.loads(await ws.recv())
    assert (answer["type"], answer["id"], answer["error"]["code"]) == ("errorresponse", 4, -32602)
    await ws.send('{"type":"notification","method":"confirmed","data":"all done"}')
    assert await ws.recv() == '{"type":"notification","method":"ask","data":"websockets"}'
    if closer == "server":
        assert await ws.recv() == '{"type":"request","id":5,"method":"hang","data":null}'
        await ws.close(4002, "websockets bye")
    else:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    received = ws.protocol.close_rcvd  # when websockets closed first: our client's answer
    assert received is not None
    return received.code, received.reason


@pytest.mark.parametrize("closer", ["client", "server"])
@pytest.mark.parametrize("kit_name", ADAPTERS)
def test_our_client_at_a_websockets_server(
    kit_name: str, closer: str, caplog: pytest.LogCaptureFixture
) -> None:
    kit = KITS[kit_name]
    record = Record()
    with asyncio_thread(30) as loop_thread:

        async def handler(ws: ServerConnection) -> None:
            try:
                record.add("script", await websockets_server_script(ws, port, closer))
            except BaseException as exc:
                record.add("script", exc)
                raise

        async def start() -> Any:
            return await ws_serve(handler, "127.0.0.1", 0)

        server = loop_thread.call(start)
        port = server.sockets[0].getsockname()[1]

        async def client() -> None:
            async with kit.connect(f"ws://127.0.0.1:{port}/websockets?q=1") as session:
                greetings: list[str] = []
                done = kit.event()
                serve_confirm(session)

                @session.on_notification(welcome)
                async def _welcome(text: str) -> None:
                    greetings.append(text)

                @session.on_notification(confirmed)
                async def _confirmed(_: Any) -> None:
                    done.set()

                assert await session.request(echo, {"x": [1, 2, 3]}) == {"x": [1, 2, 3]}
                assert await session.request(add, AddArgs(2, 3)) == 5
                with pytest.raises(RemoteError) as failed:
                    await session.request(fail, None)
                assert failed.value.error == "boom"
                with pytest.raises(MethodNotFound):
                    await session.request(nope, "x")
                await kit.within(5, done.wait())
                assert greetings == ["hi", "in pieces"]
                await session.notify(ask, "websockets")
                if closer == "server":
                    with pytest.raises(SessionClosed) as closed:
                        await session.request(hang, None)
                    assert (closed.value.code, closed.value.reason) == (4002, "websockets bye")
                    await kit.within(5, session.wait_closed())
                    assert (session.close_code, session.close_reason) == (4002, "websockets bye")
                else:
                    await session.close(4000, "client bye")
                    assert (session.close_code, session.close_reason) == (4000, "client bye")

        try:
            kit.run(client, 15)
        finally:

            async def stop() -> None:
                server.close()
                await server.wait_closed()

            loop_thread.call(stop)
    (outcome,) = record.wait("script")[0]
    if isinstance(outcome, BaseException):
        raise AssertionError(f"the websockets server's script failed: {outcome!r}") from outcome
    expected = (4002, "websockets bye") if closer == "server" else (4000, "client bye")
    assert outcome == expected
    assert_quiet(caplog)
