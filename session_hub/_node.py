"""The hub node's decisions, sans-I/O: what to publish where, what was lost, what is due.

`Node` holds no socket, reads no clock and draws no random number: the time comes in as
`now` (the adapter's monotonic clock) and randomness as a value in [0, 1). The hub's I/O
(`_hub.py`) asks it what to do and tells it what happened; everything here is tested
without a broker (`tests/hub/test_node.py`).

What it keeps:

- ids: session ids are `<node id>.<counter>`, so the node that holds a session is read
  from its id and routing needs no lookup;
- local membership: which attached session is in which group, so that the node subscribes
  to a group's channel only while it has a member there, and leases its presence;
- sequence numbers: one counter per channel it publishes to, and per (channel, source) the
  last number seen, so that a gap (the broker dropped messages) is counted, not ignored;
- the table of requests in flight to other nodes, with their deadlines;
- the canary and lease schedules, and the reconnection backoff.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from session_core import Backoff

from ._envelope import OVERHEAD, Envelope, Kind, decode_all, encode_batch, encode_body, seal
from ._errors import InvalidEnvelope, MessageTooLarge


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


#: How a node reconnects to its broker by default: soon, then less and less often.
_BROKER_BACKOFF = Backoff(initial=0.05, factor=2.0, max_delay=5.0, jitter=0.5)


def _retries_forever(_: Any, attribute: attrs.Attribute[Any], value: Backoff) -> None:
    if value.max_retries is not None:
        raise ValueError(f"{attribute.name}: a hub node reconnects forever; max_retries must be None")


@attrs.frozen(kw_only=True)
class HubConfig:
    """Settings of a hub node. The defaults suit a LAN; tests shorten the times."""

    lease: float = attrs.field(default=10.0, validator=_positive)
    """Seconds a node's presence (its members of each group) lives in the broker unless
    renewed; it is renewed every third of it. A node that dies stops counting within it."""
    canary_interval: float = attrs.field(default=1.0, validator=_positive)
    "Seconds between two canaries a node sends itself through the broker."
    canary_timeout: float = attrs.field(default=5.0, validator=_positive)
    "A node that hears none of its canaries for this long reconnects (deaf subscription)."
    queue_size: int = attrs.field(default=1024, validator=_positive)
    """Messages waiting for one local session; at the bound the session is closed with 1013
    (try again later), so that a slow client never holds up the others."""
    max_message_size: int = attrs.field(default=1 << 20, validator=_positive)
    "Bytes of an encoded envelope; bigger ones raise `MessageTooLarge` before publishing."
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    "Seconds `Hub.request` waits for an answer when no timeout is given."
    operation_timeout: float = attrs.field(default=2.0, validator=_positive)
    "Seconds one broker command may take before it counts as a failure (no hang)."
    backoff: Backoff = attrs.field(factory=lambda: _BROKER_BACKOFF, validator=_retries_forever)
    """Delays between reconnections to the broker: the reconnecting clients' `Backoff`,
    from 50 ms doubling up to 5 s, half of each delay random. A node retries forever, so
    its `max_retries` must stay `None`; a successful connection starts the count again."""
    prefix: str = "session-py:"
    "Prefix of every channel and key, so that several clusters can share one Redis."
    max_incoming_requests: int = attrs.field(default=1024, validator=_positive)
    "Requests from other nodes handled at once; more are answered `FAILED` (hub busy)."


#: How many ended sessions of other nodes a node remembers (`Node.session_ended`).
ENDED_MEMORY = 4096


@attrs.frozen
class Gap:
    """Messages from `source` on `channel` that never arrived (the result of `receive`)."""

    channel: str
    "The channel the messages were published on (a node's inbox or a group's channel)."
    source: str
    "The id of the node that published them."
    lost: int
    "How many: the jump in that source's sequence numbers on that channel."


class Node:
    """The state and decisions of one hub node.

    Args:
        node_id: this node's id, unique in the cluster (random; no `.` in it).
        config: the settings.
    """

    def __init__(self, node_id: str, config: HubConfig | None = None) -> None:
        if not node_id or "." in node_id or ":" in node_id:
            raise ValueError(f"a node id is non-empty and holds no '.' or ':': {node_id!r}")
        self.node_id = node_id
        self.config = config = config or HubConfig()
        self.inbox = self.inbox_of(node_id)
        "The channel of this node's direct messages, requests and replies."
        self._session_counter = 0
        self._sessions: dict[str, set[str]] = {}  # session id -> its groups
        self._groups: dict[str, set[str]] = {}  # group -> local member ids
        self._seq_out: dict[str, int] = {}  # channel -> last number published
        self._seq_in: dict[tuple[str, str], int] = {}  # (channel, source) -> last number seen
        self.lost_messages = 0
        "Messages known lost: the sum of every gap seen in a source's sequence numbers."
        self.invalid_messages = 0
        "Payloads from the broker that were not valid envelopes (dropped)."
        self.undelivered_notifications = 0
        """Notifications from this node that their holding node could not deliver (the
        session had ended), as that node said (`Kind.UNDELIVERED`)."""
        # Sessions of other nodes known to have ended, oldest first (ids are never reused).
        self._ended: dict[str, None] = {}
        # Requests in flight to other nodes: id -> (target session id, deadline).
        self._request_counter = 0
        self._requests: dict[int, tuple[str, float]] = {}
        # Canary and presence schedules.
        self._canary_next = math.inf
        self._canary_heard = math.inf
        self._renew_next = math.inf
        self._failures = 0

    # -- ids and routing ---------------------------------------------------------

    def new_session_id(self) -> str:
        """A new cluster-unique session id held by this node."""
        self._session_counter += 1
        return f"{self.node_id}.{self._session_counter}"

    @staticmethod
    def node_of(session_id: str) -> str:
        """The id of the node that holds `session_id` (whatever the id, no exception)."""
        return session_id.rpartition(".")[0]

    def is_local(self, session_id: str) -> bool:
        """Whether `session_id` was minted by this node (held here, or ended)."""
        return self.node_of(session_id) == self.node_id

    def inbox_of(self, node_id: str) -> str:
        """The inbox channel of node `node_id`."""
        return f"{self.config.prefix}node:{node_id}"

    def group_channel(self, group: str) -> str:
        """The channel of `group`'s broadcasts."""
        return f"{self.config.prefix}group:{group}"

    def session_ended(self, session_id: str) -> None:
        """Remember that `session_id` (another node's) has ended, among the last
        `ENDED_MEMORY` such ids: a notification or request to it then fails at once."""
        self._ended[session_id] = None
        if len(self._ended) > ENDED_MEMORY:
            del self._ended[next(iter(self._ended))]

    def known_ended(self, session_id: str) -> bool:
        """Whether `session_id` is another node's session known to have ended."""
        return session_id in self._ended

    def undelivered(self, session_id: str) -> None:
        """The holding node said a notification to `session_id` was not delivered."""
        self.undelivered_notifications += 1
        self.session_ended(session_id)

    # -- local sessions and groups ----------------------------------------------

    def attach(self, session_id: str) -> None:
        """Record a local session. Raises `ValueError` for an id not minted here or twice."""
        if not self.is_local(session_id) or session_id in self._sessions:
            raise ValueError(f"session id {session_id!r} is not a new id of node {self.node_id}")
        self._sessions[session_id] = set()

    def is_attached(self, session_id: str) -> bool:
        """Whether `session_id` is a session attached to this node now."""
        return session_id in self._sessions

    def detach(self, session_id: str) -> list[str]:
        """Forget a local session and its memberships; return the groups left with no member."""
        emptied = []
        for group in self._sessions.pop(session_id, set()):
            if self._remove(session_id, group):
                emptied.append(group)
        return emptied

    def join(self, session_id: str, group: str) -> bool:
        """Add a member; return whether the group had no local member (subscribe now)."""
        if session_id not in self._sessions:
            raise ValueError(f"session {session_id!r} is not attached to this node")
        members = self._groups.setdefault(group, set())
        first = not members
        members.add(session_id)
        self._sessions[session_id].add(group)
        return first

    def leave(self, session_id: str, group: str) -> bool:
        """Remove a member; return whether the group has no local member left (unsubscribe)."""
        groups = self._sessions.get(session_id)
        if groups is None or group not in groups:
            return False
        groups.discard(group)
        return self._remove(session_id, group)

    def _remove(self, session_id: str, group: str) -> bool:
        members = self._groups.get(group)
        if members is None:
            return False
        members.discard(session_id)
        if members:
            return False
        del self._groups[group]
        return True

    def local_members(self, group: str) -> frozenset[str]:
        """The local sessions in `group`."""
        return frozenset(self._groups.get(group, ()))

    def groups(self) -> dict[str, frozenset[str]]:
        """Every group with a local member, and those members (what the node leases)."""
        return {g: frozenset(m) for g, m in self._groups.items()}

    def channels(self) -> list[str]:
        """The channels the node must be subscribed to now: its inbox and its groups'."""
        return [self.inbox, *(self.group_channel(g) for g in self._groups)]

    # -- sending -------------------------------------------------------------------

    def prepare(self, kind: Kind, **fields: Any) -> bytes:
        """Encode an envelope's fields (`Envelope`'s), not yet numbered: `seal` numbers it.

        Raises:
            MessageTooLarge: the envelope would be over `max_message_size`.
            EncodingError: a value cannot be sent as JSON.
        """
        body = encode_body(kind, **fields)
        size = len(body) + OVERHEAD + len(self.node_id)
        if size > self.config.max_message_size:
            raise MessageTooLarge(size, self.config.max_message_size)
        return body

    def seal(self, channel: str, bodies: list[bytes]) -> list[bytes]:
        """The messages to publish on `channel` for `bodies` (from `prepare`), in order.

        One body is one whole envelope; several go in batches (as few as fit in
        `max_message_size`), numbered in the channel's sequence in the order given.
        """
        limit = self.config.max_message_size - OVERHEAD - len(self.node_id)
        seq = self._seq_out.get(channel, 0)
        messages = []
        start = 0
        while start < len(bodies):
            end, size = start + 1, len(bodies[start])
            while end < len(bodies) and size + 1 + len(bodies[end]) <= limit:
                size += 1 + len(bodies[end])
                end += 1
            if end - start == 1:
                messages.append(seal(self.node_id, seq + 1, bodies[start]))
            else:
                messages.append(encode_batch(self.node_id, seq + 1, bodies[start:end]))
            seq += end - start
            start = end
        self._seq_out[channel] = seq
        return messages

    def build(self, channel: str, kind: Kind, **fields: Any) -> bytes:
        """Encode one envelope for `channel`, numbered in the channel's sequence.

        Raises:
            MessageTooLarge: the encoding is over `max_message_size` (nothing is numbered).
            EncodingError: a value cannot be sent as JSON.
        """
        return self.seal(channel, [self.prepare(kind, **fields)])[0]

    def forget_channel(self, channel: str) -> None:
        """Forget the sequence counter of a channel nobody listens to any more (a group's)."""
        self._seq_out.pop(channel, None)

    # -- receiving -----------------------------------------------------------------

    def subscribed(self, channel: str) -> None:
        """The node (re)started listening to `channel` after not listening to it.

        What came before is none of its business: the next number from each source is taken
        as it is, not as a gap. (Not called after a reconnection: a gap there is a loss.)
        """
        for key in [k for k in self._seq_in if k[0] == channel]:
            del self._seq_in[key]

    def unsubscribed(self, channel: str) -> None:
        """The node stopped listening to `channel`: forget its sources' numbers."""
        self.subscribed(channel)

    def receive(self, channel: str, payload: bytes) -> tuple[list[Envelope], Gap | None]:
        """Read one message received on `channel`: an envelope or a batch of them.

        Returns:
            The envelopes to act on, in order (none for an invalid message, or this node's
            own broadcasts; this node's canaries on its inbox), and the gap the sequence
            numbers reveal, if any.
        """
        try:
            envelopes = decode_all(payload)
        except InvalidEnvelope:
            self.invalid_messages += 1
            return [], None
        source = envelopes[0].source
        if source == self.node_id:
            # Own messages: the canary on the inbox, and broadcasts echoed by a group's
            # channel (their local members were served directly).
            if channel != self.inbox:
                return [], None
            return [e for e in envelopes if e.kind is Kind.CANARY], None  # `canary_heard`
        key = (channel, source)
        last = self._seq_in.get(key)
        first = envelopes[0].seq
        self._seq_in[key] = max(envelopes[-1].seq, last or 0)
        gap = None
        if last is not None and first > last + 1:
            gap = Gap(channel, source, first - last - 1)
            self.lost_messages += gap.lost
        return envelopes, gap

    # -- requests in flight ----------------------------------------------------------

    def start_request(self, target: str, now: float, timeout: float | None) -> tuple[int, float]:
        """Record a request to a remote session; return its id and deadline."""
        self._request_counter += 1
        deadline = now + (self.config.request_timeout if timeout is None else timeout)
        self._requests[self._request_counter] = (target, deadline)
        return self._request_counter, deadline

    def finish_request(self, request_id: int) -> bool:
        """Forget a request; return whether it was in flight (False: unknown or late)."""
        return self._requests.pop(request_id, None) is not None

    def expired_requests(self, now: float) -> list[int]:
        """The requests whose deadline has passed (they stay until `finish_request`)."""
        return [rid for rid, (_, deadline) in self._requests.items() if deadline <= now]

    def requests_to(self, node_id: str | None = None) -> list[int]:
        """The requests in flight to sessions of `node_id` (all when None)."""
        return [
            rid for rid, (t, _) in self._requests.items() if node_id is None or self.node_of(t) == node_id
        ]

    def request_deadline(self) -> float | None:
        """The earliest deadline of the requests in flight."""
        return min((d for _, d in self._requests.values()), default=None)

    # -- connection, canary, presence ----------------------------------------------

    def connected(self, now: float) -> None:
        """The broker connection is up and subscribed: start the canary and renew at once."""
        self._failures = 0
        self._canary_next = now
        self._canary_heard = now
        self._renew_next = now

    def disconnected(self) -> list[int]:
        """The broker connection is lost: return the requests whose answers may be lost."""
        self._canary_next = self._canary_heard = self._renew_next = math.inf
        return self.requests_to(None)

    def canary(self, now: float) -> bytes | None:
        """The canary to publish to this node's inbox if one is due, else None."""
        if now < self._canary_next:
            return None
        self._canary_next = now + self.config.canary_interval
        return self.build(self.inbox, Kind.CANARY)

    def canary_heard(self, now: float) -> None:
        """This node's canary came back through the broker."""
        self._canary_heard = now

    def deaf(self, now: float) -> bool:
        """Whether no canary came back for `canary_timeout`: the subscription is deaf."""
        # The same sum as in `get_timer`, and `>=`: woken at exactly that instant, the
        # caller must find it due (`now - heard >= timeout` can differ by a rounding).
        return now >= self._canary_heard + self.config.canary_timeout

    def renew_due(self, now: float) -> bool:
        """Whether the presence lease is due for renewal (every third of the lease)."""
        if now < self._renew_next:
            return False
        self._renew_next = now + self.config.lease / 3
        return True

    def get_timer(self) -> float:
        """The next time something is due: a canary, a renewal, a deaf check, a deadline."""
        deaf_at = self._canary_heard + self.config.canary_timeout
        request = self.request_deadline()
        return min(self._canary_next, self._renew_next, deaf_at, math.inf if request is None else request)

    def backoff(self, random: float) -> float:
        """The delay before the next reconnection attempt, with jitter.

        Args:
            random: a value in [0, 1) from the caller's random source.

        `HubConfig.backoff`'s delay for the failures in a row so far (jittered, so that
        nodes that lost the same broker do not all come back in the same instant).
        """
        delay = self.config.backoff.delay(self._failures, random)
        self._failures = min(self._failures + 1, 64)
        return delay


def unique(ids: Iterable[str]) -> tuple[str, ...]:
    """Session ids as a sorted tuple without repeats (for `exclude`)."""
    return tuple(sorted(set(ids)))
