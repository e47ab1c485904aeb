"""The envelope: what one hub node publishes to another through the broker.

Sans-I/O: bytes in, `Envelope` out, and back. The wire form is a JSON object with short
keys, versioned (`"v"`), so that nodes of different releases can share a broker and refuse
what they cannot read instead of misreading it::

    {"v":2,"src":"a1b2c3","seq":7,"k":"request","to":"a9f0e1.12","m":"whoami","d":null,
     "id":3,"rt":"a1b2c3","t":5.0}

Several envelopes from one source for one channel travel as one batch (one PUBLISH, one
message to read), numbered from `seq` on, each without its version, source and number::

    {"v":2,"k":"batch","src":"a1b2c3","seq":8,"e":[{"k":"broadcast",...},{"k":...}]}

Version 2 added the batch (and the kinds `cancel` and `undelivered`); a node reads its own
version only, so nodes of version 1 and 2 do not share a broker.

Every envelope names its source node and carries a sequence number that the source counts
per channel, so that a receiver sees a gap when the broker drops messages (pub/sub is at
most once). A request carries the node to answer (`reply_to`) and its time budget.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import orjson

from session_core.driver import encode_json as dumps

from ._errors import InvalidEnvelope

#: The version this code writes and the only one it reads.
VERSION = 2


class Kind(enum.Enum):
    """What an envelope carries."""

    NOTIFICATION = "notification"
    "A notification for one session (`target` is its id)."
    BROADCAST = "broadcast"
    "A notification for every member of a group (`target` is the group)."
    REQUEST = "request"
    "A request for one session; the answer goes to `reply_to` as a `REPLY`."
    REPLY = "reply"
    "The outcome of a `REQUEST` (`request_id` is the requester's)."
    CANARY = "canary"
    "Sent by a node to its own inbox: hearing it proves the subscription is alive."
    CANCEL = "cancel"
    """The requester gave up its `REQUEST` `request_id` (its caller was cancelled): the
    holding node cancels the session's request (which sends `$/cancel` to the peer)."""
    UNDELIVERED = "undelivered"
    """The holding node's answer to a `NOTIFICATION` for a session it no longer holds
    (`target` is the session id): the sender learns that the session ended."""


class Outcome(enum.Enum):
    """How a request ended, carried by a `REPLY`."""

    RESULT = "result"
    "`data` is the response's result."
    ERROR = "error"
    "`data` is the error response's value (the method's error type)."
    PROTOCOL_ERROR = "protocol_error"
    "`code` and `message` of a protocol error object (-32601, -32602, -32603, -32800...)."
    CLOSED = "closed"
    "The session ended before answering; `code` and `message` are its close code and reason."
    NOT_FOUND = "not_found"
    "The node holds no session with that id."
    TIMEOUT = "timeout"
    "The session's peer did not answer within the request's time budget."
    FAILED = "failed"
    "The request could not be made on the holding node; `message` says why."


@attrs.frozen(kw_only=True)
class Envelope:
    """One message between hub nodes."""

    kind: Kind
    "What it carries."
    source: str
    "Id of the node that published it."
    seq: int
    "The source's sequence number on this channel (from 1), for gap detection."
    target: str = ""
    "Session id (notification, request), group (broadcast), or empty."
    method: str = ""
    "Method name (notification, broadcast, request)."
    data: Any = None
    "JSON value: notification or request data, result or error value."
    request_id: int = 0
    "Requests and replies: the id in the requester's table of requests in flight."
    reply_to: str = ""
    "Requests: the node to send the reply to."
    timeout: float | None = None
    """Requests: the seconds left to answer when the request was published.

    Relative, not an absolute deadline: the clocks of two machines differ, while the
    time a message spends in the broker is well under a millisecond."""
    exclude: tuple[str, ...] = ()
    "Broadcasts: session ids that must not receive it."
    outcome: Outcome | None = None
    "Replies: how the request ended."
    code: int = 0
    "Replies: protocol error code, or close code."
    message: str = ""
    "Replies: protocol error message, close reason, or why it failed."


_KINDS = {k.value: k for k in Kind}
_OUTCOMES = {o.value: o for o in Outcome}


def encode_body(
    kind: Kind,
    *,
    target: str = "",
    method: str = "",
    data: Any = None,
    request_id: int = 0,
    reply_to: str = "",
    timeout: float | None = None,
    exclude: tuple[str, ...] = (),
    outcome: Outcome | None = None,
    code: int = 0,
    message: str = "",
) -> bytes:
    """Encode an envelope's fields (`Envelope`'s, but its source and number): what a batch
    holds (`encode_batch`), and what `seal` turns into a whole envelope.

    Raises:
        EncodingError: `data` holds something JSON cannot represent.
    """
    obj: dict[str, Any] = {"k": kind.value}
    if target:
        obj["to"] = target
    if method:
        obj["m"] = method
    if data is not None:
        obj["d"] = data
    if request_id:
        obj["id"] = request_id
    if reply_to:
        obj["rt"] = reply_to
    if timeout is not None:
        obj["t"] = timeout
    if exclude:
        obj["x"] = list(exclude)
    if outcome is not None:
        obj["o"] = outcome.value
    if code:
        obj["c"] = code
    if message:
        obj["msg"] = message
    return dumps(obj)


#: Bytes a whole envelope or a batch adds to its bodies, besides the source's id and the
#: number (at most 20 digits): what a node allows for when it checks a message's size.
OVERHEAD = len(b'{"v":2,"k":"batch","src":"","seq":,"e":[]}') + 20


def seal(source: str, seq: int, body: bytes) -> bytes:
    """A whole envelope: `body` (from `encode_body`) with its version, source and number."""
    return b'{"v":%d,"src":%b,"seq":%d,%b' % (VERSION, dumps(source), seq, body[1:])


def encode_batch(source: str, seq: int, bodies: list[bytes]) -> bytes:
    """A batch: `bodies` (from `encode_body`) from `source`, numbered from `seq` on."""
    return b'{"v":%d,"k":"batch","src":%b,"seq":%d,"e":[%b]}' % (
        VERSION,
        dumps(source),
        seq,
        b",".join(bodies),
    )


def body_of(envelope: Envelope) -> bytes:
    """`encode_body` of `envelope`'s fields: what it is in a batch.

    Raises:
        EncodingError: `data` holds something JSON cannot represent.
    """
    e = envelope
    return encode_body(
        e.kind,
        target=e.target,
        method=e.method,
        data=e.data,
        request_id=e.request_id,
        reply_to=e.reply_to,
        timeout=e.timeout,
        exclude=e.exclude,
        outcome=e.outcome,
        code=e.code,
        message=e.message,
    )


def encode(envelope: Envelope) -> bytes:
    """Encode `envelope` to its wire form.

    Raises:
        EncodingError: `data` holds something JSON cannot represent.
    """
    return seal(envelope.source, envelope.seq, body_of(envelope))


def _get(obj: dict[str, Any], key: str, tp: type, default: Any) -> Any:
    value = obj.get(key, default)
    # `type(...) is` and not isinstance: JSON's `true` must not pass for an integer.
    if value is not default and type(value) is not tp:
        raise InvalidEnvelope(f"field {key!r} must be of type {tp.__name__}")
    return value


def decode(payload: bytes) -> Envelope:
    """Read one envelope (not a batch) from its wire form.

    Raises:
        InvalidEnvelope: `payload` is not JSON, not an object, of another version, a batch,
            or has a missing or ill-typed field. Nothing else escapes, whatever the bytes.
    """
    envelopes, batch = _decode(payload)
    if batch:
        raise InvalidEnvelope("a batch, not one envelope")
    return envelopes[0]


def decode_all(payload: bytes) -> list[Envelope]:
    """Read the envelopes of one message: a whole envelope, or a batch (in order).

    Raises:
        InvalidEnvelope: `payload` is not JSON, not an object, of another version, or has a
            missing or ill-typed field (in any envelope of a batch: the batch is refused
            whole). Nothing else escapes, whatever the bytes.
    """
    return _decode(payload)[0]


def _decode(payload: bytes) -> tuple[list[Envelope], bool]:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise InvalidEnvelope("not JSON") from None
    if type(obj) is not dict:
        raise InvalidEnvelope("not a JSON object")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise InvalidEnvelope(f"unsupported envelope version {obj.get('v')!r:.20}")
    source = _get(obj, "src", str, "")
    seq = _get(obj, "seq", int, 0)
    if not source or seq < 1:
        raise InvalidEnvelope("missing source or sequence number")
    if obj.get("k") != "batch":
        return [_envelope(obj, source, seq)], False
    bodies = _get(obj, "e", list, [])
    if not bodies:
        raise InvalidEnvelope("empty batch")
    envelopes = []
    for number, body in enumerate(bodies, seq):
        if type(body) is not dict or body.get("k") == "batch":
            raise InvalidEnvelope("a batch holds envelope objects only")
        envelopes.append(_envelope(body, source, number))
    return envelopes, True


def _envelope(obj: dict[str, Any], source: str, seq: int) -> Envelope:
    kind = _KINDS.get(_get(obj, "k", str, ""))
    if kind is None:
        raise InvalidEnvelope("unknown kind")
    timeout = obj.get("t")
    if timeout is not None:
        if type(timeout) not in (int, float) or not timeout >= 0:
            raise InvalidEnvelope("field 't' must be a non-negative number")
        timeout = float(timeout)
    exclude = _get(obj, "x", list, [])
    if any(type(x) is not str for x in exclude):
        raise InvalidEnvelope("field 'x' must be a list of strings")
    outcome_name = _get(obj, "o", str, None)
    outcome = None if outcome_name is None else _OUTCOMES.get(outcome_name)
    if outcome_name is not None and outcome is None:
        raise InvalidEnvelope("unknown outcome")
    envelope = Envelope(
        kind=kind,
        source=source,
        seq=seq,
        target=_get(obj, "to", str, ""),
        method=_get(obj, "m", str, ""),
        data=obj.get("d"),
        request_id=_get(obj, "id", int, 0),
        reply_to=_get(obj, "rt", str, ""),
        timeout=timeout,
        exclude=tuple(exclude),
        outcome=outcome,
        code=_get(obj, "c", int, 0),
        message=_get(obj, "msg", str, ""),
    )
    # What each kind needs to be acted on; checked here so that the hub never has to.
    if kind in (Kind.NOTIFICATION, Kind.BROADCAST, Kind.REQUEST) and not (
        envelope.target and envelope.method
    ):
        raise InvalidEnvelope(f"{kind.value} without target or method")
    if kind is Kind.REQUEST and not (envelope.request_id > 0 and envelope.reply_to):
        raise InvalidEnvelope("request without id or reply_to")
    if kind is Kind.REPLY and (envelope.outcome is None or envelope.request_id <= 0):
        raise InvalidEnvelope("reply without outcome or id")
    if kind is Kind.CANCEL and envelope.request_id <= 0:
        raise InvalidEnvelope("cancel without id")
    if kind is Kind.UNDELIVERED and not envelope.target:
        raise InvalidEnvelope("undelivered without target")
    return envelope
