"""A hypothesis state machine mixing requests, notifications, answers, timeouts, pings and
closes at random, both ways, with invariants checked after every step."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from session_core import (
    Config,
    Connection,
    ConnectionClosed,
    ErrorResponseReceived,
    NotificationReceived,
    RequestReceived,
    ResponseReceived,
    SessionClosed,
    State,
)
from session_core._messages import MAX_ID
from session_core.driver import OUTCOMES
from tests.helpers import SessionPair

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)


class Side:
    """What one end of the pair has sent and what has come back, as the test sees it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.next_id = 1
        self.waiting: dict[int, object] = {}  # id -> data sent
        self.outcomes: dict[int, int] = {}  # id -> how many outcome events
        self.given_up: set[int] = set()
        self.to_answer: list[RequestReceived] = []
        self.notifications: list[object] = []
        self.closed = False

    def expect_id(self, request_id: int) -> None:
        # docs/protocol.md, "Request ids": from 1, counting up, never an id that still waits.
        expected = self.next_id
        while expected in self.waiting:
            expected = expected + 1 if expected < MAX_ID else 1
        assert request_id == expected, (request_id, expected)
        self.next_id = expected + 1 if expected < MAX_ID else 1


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = Config(keepalive_interval=5.0, keepalive_timeout=3.0, close_timeout=2.0)
        self.pair = SessionPair(config=config)
        self.sides = {"client": Side("client"), "server": Side("server")}

    def conn(self, name: str) -> Connection:
        return self.pair.client if name == "client" else self.pair.server

    def other(self, name: str) -> str:
        return "server" if name == "client" else "client"

    def deliver(self) -> None:
        self.pair.pump()
        self.collect()

    def collect(self) -> None:
        self.pair.client_events += self.pair.client.events()
        self.pair.server_events += self.pair.server.events()
        for name, events in (("client", self.pair.client_events), ("server", self.pair.server_events)):
            side = self.sides[name]
            for event in events:
                if isinstance(event, OUTCOMES):
                    assert event.request_id in side.waiting, event
                    assert event.request_id not in side.given_up
                    side.outcomes[event.request_id] = side.outcomes.get(event.request_id, 0) + 1
                    if isinstance(event, ResponseReceived):
                        assert event.result == side.waiting[event.request_id]
                    del side.waiting[event.request_id]
                elif isinstance(event, RequestReceived):
                    side.to_answer.append(event)
                elif isinstance(event, NotificationReceived):
                    side.notifications.append(event.data)
                elif isinstance(event, ConnectionClosed):
                    assert not side.closed, "two ConnectionClosed events"
                    side.closed = True
                    side.to_answer.clear()
            events.clear()

    @rule(
        name=st.sampled_from(["client", "server"]),
        data=json_values,
        timeout=st.none() | st.floats(0.5, 10.0),
    )
    def send_request(self, name: str, data: object, timeout: float | None) -> None:
        side = self.sides[name]
        try:
            request_id = self.conn(name).send_request("echo", data, now=self.pair.now, timeout=timeout)
        except SessionClosed:
            assert self.conn(name).state in (State.CLOSING, State.CLOSED)
            return
        side.expect_id(request_id)
        assert request_id not in side.waiting
        side.waiting[request_id] = data

    @rule(name=st.sampled_from(["client", "server"]), data=json_values)
    def notify(self, name: str, data: object) -> None:
        try:
            self.conn(name).send_notification("note", data)
        except SessionClosed:
            return

    @rule(name=st.sampled_from(["client", "server"]), pick=st.integers(0, 100), ok=st.booleans())
    def answer(self, name: str, pick: int, ok: bool) -> None:
        side = self.sides[name]
        if not side.to_answer:
            return
        request = side.to_answer.pop(pick % len(side.to_answer))  # any order: reordering
        if ok:
            self.conn(name).send_response(request.request_id, request.data)
        else:
            self.conn(name).send_error_response(request.request_id, "no")

    @rule(name=st.sampled_from(["client", "server"]), pick=st.integers(0, 100))
    def cancel(self, name: str, pick: int) -> None:
        side = self.sides[name]
        if side.waiting:
            request_id = sorted(side.waiting)[pick % len(side.waiting)]
            assert self.conn(name).cancel_request(request_id)
            del side.waiting[request_id]
            side.given_up.add(request_id)

    @rule()
    def pump(self) -> None:
        self.deliver()

    @rule(seconds=st.floats(0.1, 8.0))
    def advance(self, seconds: float) -> None:
        self.deliver()
        self.pair.advance(seconds)
        self.deliver()

    @rule(name=st.sampled_from(["client", "server"]))
    def ping(self, name: str) -> None:
        if self.conn(name).state is State.OPEN:
            self.conn(name).send_ping()

    @precondition(lambda self: self.pair.client.state is State.OPEN)
    @rule(name=st.sampled_from(["client", "server"]), code=st.sampled_from([1000, 1001, 4000]))
    def close(self, name: str, code: int) -> None:
        self.conn(name).close(code, "bye", now=self.pair.now)
        self.collect()  # its pending requests failed at once; the peer has not heard yet

    @invariant()
    def pending_matches_the_model(self) -> None:
        for name, side in self.sides.items():
            assert self.conn(name).pending_requests == len(side.waiting)
            assert all(count == 1 for count in side.outcomes.values())

    @invariant()
    def a_closed_side_waits_for_nothing(self) -> None:
        for side in self.sides.values():
            if side.closed:
                assert not side.waiting

    def teardown(self) -> None:
        # However the run went, ending it resolves every request exactly once.
        if self.pair.client.state is State.OPEN:
            self.pair.client.close(now=self.pair.now)
        self.deliver()
        self.pair.advance(30.0)
        self.deliver()
        for side in self.sides.values():
            assert side.closed
            assert not side.waiting
            assert all(count == 1 for count in side.outcomes.values())


SessionMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestSession = SessionMachine.TestCase


def test_error_response_outcome_is_counted() -> None:
    # Guard for the machine above: an error response is one of the outcomes it counts.
    assert ErrorResponseReceived in OUTCOMES
