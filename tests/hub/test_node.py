"""`Node`, the hub's decisions, without a broker: virtual time, hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from session_core import Backoff
from session_hub import HubConfig, Kind, MessageTooLarge, Node, decode
from session_hub._envelope import decode_all

CONFIG = HubConfig(lease=9.0, canary_interval=1.0, canary_timeout=3.0, request_timeout=30.0)


def test_session_ids_name_their_node() -> None:
    node = Node("n1")
    ids = [node.new_session_id() for _ in range(3)]
    assert len(set(ids)) == 3
    assert all(Node.node_of(i) == "n1" and node.is_local(i) for i in ids)
    assert not node.is_local("n2.1")
    assert Node.node_of("garbage") == ""


@pytest.mark.parametrize("bad", ["", "a.b", "a:b"])
def test_node_ids_that_would_break_routing_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Node(bad)


def test_group_channel_subscribed_only_while_a_member_is_there() -> None:
    node = Node("n1")
    a, b = node.new_session_id(), node.new_session_id()
    node.attach(a)
    node.attach(b)
    assert node.channels() == [node.inbox]
    assert node.join(a, "room") is True  # first member: subscribe
    assert node.join(b, "room") is False
    assert node.channels() == [node.inbox, node.group_channel("room")]
    assert node.leave(a, "room") is False
    assert node.leave(a, "room") is False  # not a member any more: nothing
    assert node.local_members("room") == {b}
    assert node.detach(b) == ["room"]  # last member gone: unsubscribe
    assert node.channels() == [node.inbox]
    assert node.groups() == {}


def test_attach_refuses_foreign_or_repeated_ids_and_join_needs_attach() -> None:
    node = Node("n1")
    with pytest.raises(ValueError):
        node.attach("n2.1")
    sid = node.new_session_id()
    node.attach(sid)
    with pytest.raises(ValueError):
        node.attach(sid)
    with pytest.raises(ValueError):
        node.join("n1.99", "g")


def test_gaps_are_counted_per_channel_and_source() -> None:
    sender, receiver = Node("s"), Node("r")
    channel = receiver.inbox
    payloads = [sender.build(channel, Kind.NOTIFICATION, target="r.1", method="m") for _ in range(6)]
    assert receiver.receive(channel, payloads[0])[1] is None
    assert receiver.receive(channel, payloads[1])[1] is None
    _, gap = receiver.receive(channel, payloads[4])  # 3 and 4 were lost
    assert gap is not None and (gap.source, gap.lost) == ("s", 2)
    assert receiver.lost_messages == 2
    # A late or repeated message is not a gap and does not move the baseline back.
    assert receiver.receive(channel, payloads[2])[1] is None
    assert receiver.receive(channel, payloads[5])[1] is None
    assert receiver.lost_messages == 2


def test_a_fresh_subscription_is_not_a_gap() -> None:
    sender, receiver = Node("s"), Node("r")
    channel = sender.group_channel("g")
    first = sender.build(channel, Kind.BROADCAST, target="g", method="m")
    receiver.subscribed(channel)
    receiver.receive(channel, first)
    receiver.unsubscribed(channel)
    for _ in range(5):
        sender.build(channel, Kind.BROADCAST, target="g", method="m")  # published while away
    receiver.subscribed(channel)
    envelopes, gap = receiver.receive(channel, sender.build(channel, Kind.BROADCAST, target="g", method="m"))
    assert [e.seq for e in envelopes] == [7]
    assert gap is None and receiver.lost_messages == 0


@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_lost_messages_equals_what_was_dropped_before_the_last_delivery(delivered: list[bool]) -> None:
    sender, receiver = Node("s"), Node("r")
    channel = receiver.inbox
    receiver.receive(channel, sender.build(channel, Kind.NOTIFICATION, target="r.1", method="m"))
    dropped_before_last = 0
    pending = 0
    for keep in delivered:
        payload = sender.build(channel, Kind.NOTIFICATION, target="r.1", method="m")
        if keep:
            receiver.receive(channel, payload)
            dropped_before_last += pending
            pending = 0
        else:
            pending += 1
    assert receiver.lost_messages == dropped_before_last


def test_own_broadcasts_are_ignored_and_own_canary_is_returned() -> None:
    node = Node("n1", CONFIG)
    channel = node.group_channel("g")
    assert node.receive(channel, node.build(channel, Kind.BROADCAST, target="g", method="m")) == ([], None)
    node.connected(0.0)
    canary = node.canary(0.0)
    assert canary is not None
    envelopes, _ = node.receive(node.inbox, canary)
    assert [e.kind for e in envelopes] == [Kind.CANARY]


@given(st.binary(max_size=64))
def test_invalid_payloads_are_counted_never_raised(data: bytes) -> None:
    node = Node("n1")
    envelopes, gap = node.receive(node.inbox, data)
    assert gap is None
    assert envelopes or node.invalid_messages == 1


def test_message_too_large_before_numbering() -> None:
    node = Node("n1", HubConfig(max_message_size=100))
    channel = node.group_channel("g")
    with pytest.raises(MessageTooLarge) as info:
        node.build(channel, Kind.BROADCAST, target="g", method="m", data="x" * 200)
    assert info.value.limit == 100 and info.value.size > 200
    # The refused message used no sequence number: receivers see no gap.
    assert decode(node.build(channel, Kind.BROADCAST, target="g", method="m")).seq == 1


@given(
    st.lists(st.tuples(st.integers(1, 5), st.booleans()), min_size=1, max_size=30),
    st.integers(150, 400),
)
def test_batches_keep_order_and_gaps_count_every_envelope_lost(
    messages: list[tuple[int, bool]], max_size: int
) -> None:
    # Each step: the sender seals `count` envelopes at once (one message, or several when
    # they do not fit in `max_size`), and the broker delivers them or drops them.
    sender = Node("s", HubConfig(max_message_size=max_size))
    receiver = Node("r")
    channel = receiver.inbox
    # The first message from a source sets the baseline (what came before is not counted).
    receiver.receive(channel, sender.build(channel, Kind.NOTIFICATION, target="r.1", method="m"))
    received: list[int] = []
    sent = dropped_before_last = pending = 0
    for count, delivered in messages:
        bodies = [
            sender.prepare(Kind.NOTIFICATION, target="r.1", method="m", data=sent + i) for i in range(count)
        ]
        sent += count
        for payload in sender.seal(channel, bodies):
            assert len(payload) <= max_size
            if delivered:
                envelopes, _ = receiver.receive(channel, payload)
                received += [e.data for e in envelopes]
                dropped_before_last += pending
                pending = 0
            else:
                pending += len(decode_all(payload))
    assert received == sorted(received)  # in the order sealed, each once
    assert receiver.lost_messages == dropped_before_last
    assert len(received) + dropped_before_last + pending == sent


def test_requests_in_flight_deadlines_and_failures() -> None:
    node = Node("n1", CONFIG)
    now = 100.0
    r1, d1 = node.start_request("n2.1", now, 5.0)
    r2, d2 = node.start_request("n3.4", now, None)  # the configured default
    assert (d1, d2) == (105.0, 130.0)
    assert node.get_timer() == 105.0
    assert node.expired_requests(104.9) == []
    assert node.expired_requests(105.0) == [r1]
    assert node.requests_to("n3") == [r2]
    assert node.finish_request(r1) is True
    assert node.finish_request(r1) is False  # a late answer: unknown
    assert node.disconnected() == [r2]


def test_canary_schedule_and_deafness_in_virtual_time() -> None:
    node = Node("n1", CONFIG)
    assert node.canary(0.0) is None  # not connected: nothing due
    node.connected(10.0)
    assert node.canary(10.0) is not None
    assert node.canary(10.5) is None
    assert node.renew_due(10.5)  # due at once after connecting too
    assert node.get_timer() == 11.0
    assert node.canary(11.0) is not None
    node.canary_heard(11.0)
    assert not node.deaf(13.99)
    assert node.deaf(14.0)  # nothing heard for canary_timeout
    node.disconnected()
    assert not node.deaf(1000.0)  # deafness is a property of a live connection


def test_lease_renewed_every_third() -> None:
    node = Node("n1", CONFIG)
    node.connected(0.0)
    assert node.renew_due(0.0)
    assert not node.renew_due(2.9)
    assert node.renew_due(3.0)


@given(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20))
def test_backoff_grows_is_capped_and_jittered(randoms: list[float]) -> None:
    config = HubConfig(backoff=Backoff(initial=0.1, max_delay=2.0))
    node = Node("n1", config)
    for attempt, r in enumerate(randoms):
        cap = min(2.0, 0.1 * 2**attempt)
        delay = node.backoff(r)
        assert cap / 2 <= delay <= cap
    node.connected(0.0)
    assert node.backoff(0.0) == 0.1  # reset by a successful connection (0: no jitter taken off)


def test_a_node_reconnects_forever() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        HubConfig(backoff=Backoff(max_retries=3))


@given(
    st.lists(
        st.tuples(st.sampled_from(["request", "heard", "nothing"]), st.floats(0.01, 50)),
        min_size=1,
        max_size=30,
    )
)
def test_the_timer_always_moves_forward_once_its_work_is_done(steps: list[tuple[str, float]]) -> None:
    # What the hub's timer loop does at each wake-up; if the next timer were not later,
    # a loop on a virtual clock would spin at one instant forever.
    node = Node("n1", CONFIG)
    node.connected(0.0)
    now = 0.0
    for action, value in steps:
        if action == "request":
            node.start_request("n2.1", now, value)
        elif action == "heard":
            node.canary_heard(now)
        now = node.get_timer()
        for _ in range(2):  # a reconnection at `now` makes work due at `now` once more
            node.canary(now)
            node.renew_due(now)
            if node.deaf(now):
                node.disconnected()
                node.connected(now)
            for request_id in node.expired_requests(now):
                node.finish_request(request_id)
            if node.get_timer() > now:
                break
        assert node.get_timer() > now
