"""Arrival order under interleavings of notifications and requests chosen by hypothesis.

The promise (`session_core/driver/_dispatch.py`): a handler for a message starts only after
the handlers of every notification received before it have finished, while requests still
run concurrently with each other. A raw client writes the whole chosen sequence in one
write, so that the server reads it in the order chosen, as fast as it can; each
notification handler yields a chosen number of times (trio's scheduler then starts tasks in
its random order), and the server's log of handler starts and ends must keep the promise.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from session_core import Method
from tests import wire
from tests.methods import AnySession

from .backend import Backend
from .peers import RawPeer

note = Method("note", request=list[int], response=None, error=None)
ask = Method("ask", request=int, response=int, error=None)

#: A message: a notification (`"n"`) whose handler yields that many times, or a request.
OPS = st.lists(st.tuples(st.sampled_from(["n", "r"]), st.integers(0, 4)), min_size=1, max_size=12)


def _messages(ops: list[tuple[str, int]]) -> bytes:
    frames = []
    for index, (kind, yields) in enumerate(ops):
        if kind == "n":
            message: dict[str, Any] = {"type": "notification", "method": "note", "data": [index, yields]}
        else:
            message = {"type": "request", "id": index + 1, "method": "ask", "data": index}
        frames.append(wire.text_frame(json.dumps(message), client=True))
    return b"".join(frames)


def _check(ops: list[tuple[str, int]], log: list[str]) -> None:
    position = {entry: at for at, entry in enumerate(log)}
    notes = [i for i, (kind, _) in enumerate(ops) if kind == "n"]
    for i, (kind, _) in enumerate(ops):
        start = position[f"n{i} start" if kind == "n" else f"r{i}"]
        # Every notification received before this message has finished first.
        assert all(position[f"n{j} end"] < start for j in notes if j < i), (ops, log)
    # And notifications ran one at a time: each starts after the one before it ended.
    for before, after in itertools.pairwise(notes):
        assert position[f"n{before} end"] < position[f"n{after} start"], (ops, log)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_handlers_keep_arrival_order_under_chosen_interleavings(
    backend: Backend, ops: list[tuple[str, int]]
) -> None:
    log: list[str] = []
    requests = sum(kind == "r" for kind, _ in ops)

    async def on_session(session: AnySession) -> None:
        @session.on_notification(note)
        async def _(data: list[int]) -> None:
            index, yields = data
            log.append(f"n{index} start")
            for _ in range(yields):
                await backend.sleep(0)
            log.append(f"n{index} end")

        @session.on_request(ask)
        async def _(index: int) -> int:
            log.append(f"r{index}")
            return index

    async def main() -> None:
        async with backend.serve(on_session) as server:

            def client() -> list[int]:
                peer = RawPeer.connect(server.port)
                try:
                    peer.handshake(server.port)
                    peer.sock.sendall(_messages(ops))
                    answered: list[int] = []
                    while len(answered) < requests:
                        frame = peer.recv_frame()
                        assert frame is not None, "the server ended the session"
                        answer = json.loads(frame[1])
                        if answer.get("type") == "response":
                            answered.append(answer["id"])
                    return answered
                finally:
                    peer.close()

            answered = await backend.to_thread(client)
            assert sorted(answered) == [i + 1 for i, (kind, _) in enumerate(ops) if kind == "r"]
            # The notifications after the last request may still be running: let them end.
            expected = 2 * (len(ops) - requests) + requests
            assert await backend.eventually(lambda: len(log) == expected)

    backend.run(main)
    _check(ops, log)
