"""Hypothesis strategies for hostile peers: the cases of `fuzz.harness`.

The text messages are written as raw JSON text, not dumped from values, so that they can
hold what no encoder writes: duplicate keys, `NaN`, numbers too big for any float, lone
surrogate escapes, nesting thousands deep, truncations and invalid UTF-8.
"""

from __future__ import annotations

import json
from typing import TypeVar

from hypothesis import strategies as st

from session_core import Config, Role
from tests.wire import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT

from .harness import (
    RESPONSE_TEMPLATE,
    Action,
    Advance,
    Case,
    Feed,
    Frame,
    Local,
    Message,
    Op,
    upgrade_request,
)
from .pieces import METHODS, RAW_KEYS, RAW_VALUES, TYPES

T = TypeVar("T")


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """`one_of` with weights (`one_of` drops repeated strategies)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


# -- raw JSON pieces -------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)
raw_values: st.SearchStrategy[str] = st.one_of(
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.sampled_from(RAW_VALUES),
    st.integers(-3, 2**33).map(str),
    st.builds(lambda d: "[" * d + "]" * d, st.integers(1000, 1100)),  # around orjson's depth limit
    st.fixed_dictionaries({"id": st.integers(-1, 6) | json_leaf}).map(json.dumps),  # for $/cancel
    st.fixed_dictionaries({"a": st.integers(-(2**65), 2**65), "b": st.integers()}).map(json.dumps),
    st.fixed_dictionaries({"code": st.integers(-32800, -31990), "message": st.text(max_size=8)}).map(
        json.dumps
    ),
)


@st.composite
def message_texts(draw: st.DrawFn) -> bytes:
    """A message written field by field: the right fields mostly, with duplicates, odd
    values and odd keys mixed in."""
    fields: list[tuple[str, str]] = []
    kind = draw(st.sampled_from(TYPES))
    fields.append(('"type"', kind))
    if draw(st.integers(0, 4)):
        fields.append(('"id"', draw(st.sampled_from(("1", "2", "3", "0", "4294967295")) | raw_values)))
    if draw(st.integers(0, 4)):
        fields.append(('"method"', draw(st.sampled_from(METHODS))))
    fields.append((draw(st.sampled_from(('"data"', '"result"', '"error"'))), draw(raw_values)))
    for _ in range(draw(st.integers(0, 3))):  # extra, duplicate or odd fields
        fields.append((draw(st.sampled_from(RAW_KEYS)), draw(st.sampled_from(TYPES + METHODS) | raw_values)))
    order = draw(st.permutations(range(len(fields))))
    text = "{" + ",".join(f"{fields[i][0]}:{fields[i][1]}" for i in order) + "}"
    data = text.encode("utf-8", "surrogatepass")
    return draw(_mutated(data))


@st.composite
def _mutated(draw: st.DrawFn, data: bytes) -> bytes:
    how = draw(st.integers(0, 9))
    if how <= 5 or not data:
        return data
    at = draw(st.integers(0, len(data)))
    if how == 6:
        return data[:at]  # truncated
    if how == 7:  # invalid UTF-8 (including an encoded surrogate and an overlong form)
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80"]))
        return data[:at] + bad + data[at:]
    if how == 8:
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return b"\xef\xbb\xbf" + data if at % 2 else b" \n" + data + b"\t"


#: Answers for the client's requests 1-3 (and some for ids it never used).
answer_texts = st.builds(
    lambda kind, request_id, value: (
        f'{{"type":"{kind}","id":{request_id},"{"result" if kind == "response" else "error"}":{value}}}'
    ).encode("utf-8", "surrogatepass"),
    st.sampled_from(["response", "errorresponse"]),
    st.integers(0, 5) | st.sampled_from([4294967295, 4294967296, -1]),
    raw_values,
)

#: Well-formed messages for the methods the harness serves, with fitting data mostly: they
#: reach handlers, so that answers, cancels and back-pressure get exercised.
valid_texts = st.one_of(
    st.builds(
        lambda request_id, method, data: json.dumps(
            {"type": "request", "id": request_id, "method": method, "data": data}
        ).encode(),
        st.integers(0, 6),
        st.sampled_from(["echo", "echo", "add", "shout", "nope"]),
        st.sampled_from([{"a": 1, "b": 2}, "hi", 5, None, [1, 2]]) | json_values,
    ),
    st.builds(
        lambda method, data: json.dumps({"type": "notification", "method": method, "data": data}).encode(),
        st.sampled_from(["tick", "note", "$/cancel", "$/cancel"]),
        st.sampled_from([1, "x", {"id": 1}, {"id": 2}, {"id": 3}, {"id": -1}]) | json_values,
    ),
)

hostile_texts: st.SearchStrategy[bytes] = weighted(
    (4, valid_texts),
    (4, message_texts()),
    (2, answer_texts),
    (1, st.sampled_from(RAW_VALUES).map(lambda v: v.encode())),
    (1, json_values.map(lambda v: json.dumps(v).encode())),
    (1, st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass"))),  # lone surrogates: 1007
    (1, st.binary(max_size=30)),
    (1, st.just(b"")),
)

# -- frames and operations -------------------------------------------------------------

close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        lambda code, reason: code.to_bytes(2, "big") + reason,
        st.sampled_from(
            [1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1015, 2999, 3000, 4999, 5000, 999]
        )
        | st.integers(0, 65535),
        st.sampled_from([b"", b"bye", b"\xff\xfe", "é".encode(), b"x" * 124]),
    ),
)

# Mostly well-formed, so that a case goes on after its frame; sometimes broken.
frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        Frame,
        st.sampled_from([TEXT, BINARY, CONTINUATION, PING, PONG, CLOSE, 0x3, 0x7, 0xB, 0xF]),
        st.binary(max_size=40) | hostile_texts,
        st.booleans(),
        st.sampled_from([0] * 12 + [0x40, 0x20, 0x10, 0x70]),
        st.sampled_from([False] * 12 + [True]),
        st.sampled_from([0] * 12 + [1, 2]),
    ),
    # (`builds` would draw the fields left out too: give them all.)
    st.builds(lambda payload: Frame(CLOSE, payload), close_payloads),
    st.builds(
        Frame,
        st.sampled_from([PING, PING, PONG, PONG, PONG]),
        st.binary(max_size=8) | st.binary(max_size=130),
        st.just(True),
        st.just(0),
        st.just(False),
        st.just(0),
    ),
    st.builds(lambda payload: Frame(BINARY, payload), st.binary(max_size=600)),
    st.builds(
        Frame,
        st.sampled_from([PING, PING, PONG, PONG, PONG]),
        st.binary(max_size=8),
        st.just(True),
        st.just(0),
        st.just(False),
        st.just(0),
    ),
)

messages: st.SearchStrategy[Message] = st.builds(
    Message,
    hostile_texts,
    st.sampled_from([1, 1, 1, 1, 2, 3, 5]),
    st.booleans(),
)

ops: st.SearchStrategy[Op] = weighted(
    (8, messages),
    (2, frames),
    (1, st.builds(Feed, st.binary(max_size=40))),
    (1, st.builds(Advance, st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 30.0]))),
    (3, st.builds(Local, st.sampled_from(list(Action)), st.integers(0, 11))),
    (1, st.builds(Local, st.sampled_from([Action.ANSWER, Action.CANCEL]), st.integers(0, 11))),
)
"Operations; the end of the stream comes at the end of every case (and in `Feed`s)."

configs = st.builds(
    Config,
    max_message_size=st.sampled_from([None, 300, 4096, 1 << 20]),
    max_incoming_requests=st.sampled_from([1, 2, 128]),
    max_pending_requests=st.sampled_from([2, 65536]),
    keepalive_interval=st.sampled_from([None, 1.0]),
    keepalive_timeout=st.sampled_from([None, 0.5]),
    close_timeout=st.sampled_from([None, 1.0]),
    remembered_ids=st.sampled_from([1, 1024]),
    expose_internal_errors=st.booleans(),
)


@st.composite
def cases(draw: st.DrawFn, role: Role | None = None, *, max_ops: int = 12) -> Case:
    """A connection opened with a valid handshake, then `max_ops` operations at most."""
    role = role if role is not None else draw(st.sampled_from([Role.SERVER, Role.CLIENT]))
    steps: list[Op] = []
    if role is Role.CLIENT:  # requests for the peer's answers to match
        steps += [Local(Action.REQUEST, 0), Local(Action.TYPED_REQUEST, 1), Local(Action.REQUEST, 2)]
    steps += draw(st.lists(ops, max_size=max_ops))
    return Case(
        role=role,
        typed=draw(st.booleans()),
        config=draw(configs),
        ops=tuple(steps),
        chunk=draw(st.sampled_from([None, None, 1, 2, 3, 7, 64])),
        wait_for_start=draw(st.booleans()),
    )


# -- handshakes ------------------------------------------------------------------------

_REQUEST_LINES = upgrade_request().split(b"\r\n")[:-2]
_ODD_LINES = (
    b"Sec-WebSocket-Version: 8",
    b"Sec-WebSocket-Key: short",
    b"Upgrade: h2c",
    b"Connection: close",
    b"Sec-WebSocket-Protocol: chat, \xff",
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    b"Host: a\r\nHost: b",
    b"X-Long: " + b"a" * 20_000,
    b"Bad Header: x",
    b": empty",
    b"Content-Length: 5",
    b"Transfer-Encoding: chunked",
    b"\x00\x01",
)
_FIRST_LINES = (
    b"GET / HTTP/1.1",
    b"GET / HTTP/1.0",
    b"POST / HTTP/1.1",
    b"GET  HTTP/1.1",
    b"GET /\xff HTTP/1.1",
    b"get / http/1.1",
    b"GET / HTTP/2",
    b"\x16\x03\x01\x02\x00",  # a TLS hello on a plain port
)


@st.composite
def upgrade_requests(draw: st.DrawFn) -> bytes:
    """Upgrade requests, valid or broken in the ways HTTP and RFC 6455 can be."""
    lines = [draw(st.sampled_from(_FIRST_LINES) if draw(st.booleans()) else st.just(_REQUEST_LINES[0]))]
    for line in _REQUEST_LINES[1:]:
        if draw(st.integers(0, 7)):  # mostly kept
            lines.append(line)
    lines += draw(st.lists(st.sampled_from(_ODD_LINES), max_size=2))
    head = b"\r\n".join(lines) + draw(st.sampled_from([b"\r\n\r\n", b"\r\n\r\n", b"\n\n", b"\r\n"]))
    return draw(_mutated(head)) + draw(st.sampled_from([b"", b"\x81\x80\x00\x00\x00\x00"]))


@st.composite
def upgrade_responses(draw: st.DrawFn) -> bytes:
    """Responses to a client's upgrade request, valid or broken; `ACCEPT_TOKEN` stands for
    the `Sec-WebSocket-Accept` value that the harness computes from the actual request."""
    good = RESPONSE_TEMPLATE.split(b"\r\n")[:-2]
    first = draw(
        st.sampled_from(
            [
                good[0],
                b"HTTP/1.1 403 Forbidden",
                b"HTTP/1.1 200 OK",
                b"HTTP/1.1 101 Switching",
                b"HTTP/1.0 101 Switching Protocols",
                b"HTTP/1.1 999 What",
                b"SSH-2.0-OpenSSH",
            ]
        )
    )
    lines = [first] + [line for line in good[1:] if draw(st.integers(0, 7))]
    lines += draw(
        st.lists(
            st.sampled_from(
                [
                    b"Sec-WebSocket-Accept: wrong",
                    b"Sec-WebSocket-Protocol: chat",
                    b"Sec-WebSocket-Extensions: permessage-deflate",
                    b"Content-Length: 3",
                    b"Transfer-Encoding: chunked",
                ]
            ),
            max_size=2,
        )
    )
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    tail = draw(st.sampled_from([b"", b"abc", b"\x81\x02hi", b"3\r\nabc\r\n0\r\n\r\n", b"\x81\x7f"]))
    return draw(_mutated(head + tail))


@st.composite
def handshake_cases(draw: st.DrawFn) -> Case:
    """A fuzzed handshake (either role); when it opens, a few operations follow."""
    base = draw(cases(max_ops=4))
    handshake = draw(upgrade_requests() if base.role is Role.SERVER else upgrade_responses())
    return Case(
        role=base.role,
        typed=base.typed,
        config=base.config,
        ops=base.ops,
        chunk=base.chunk,
        wait_for_start=base.wait_for_start,
        handshake=handshake,
    )
