"""The test wire codec (`tests.wire`): round trips, and agreement with wsproto's parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol

from tests import wire

opcodes = st.integers(min_value=0, max_value=15)
masks = st.none() | st.binary(min_size=4, max_size=4)
# Lengths on both sides of each form's limits, and some anywhere.
payloads = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([125, 126, 127, 65535, 65536, 70000]).map(
        lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)
    ),
)


@given(
    opcodes,
    payloads,
    st.booleans(),
    masks,
    st.sampled_from([0, 0x10, 0x40, 0x70]),
    st.sampled_from([None, 7, 16, 64]),
)
def test_any_frame_round_trips(
    opcode: int, payload: bytes, fin: bool, mask: bytes | None, rsv: int, length_bits: int | None
) -> None:
    if (length_bits == 7 and len(payload) >= 126) or (length_bits == 16 and len(payload) >= 1 << 16):
        with pytest.raises(ValueError, match="does not fit"):
            wire.encode_frame(opcode, payload, length_bits=length_bits)
        return
    data = wire.encode_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv, length_bits=length_bits)
    minimal = length_bits is None or length_bits == wire.minimal_length_bits(len(payload))
    expected = wire.Frame(opcode, payload, fin, mask is not None, rsv, minimal)
    assert wire.parse_frames(data) == [expected]
    assert wire.parse_frame(data + b"\x81", 0) == (expected, len(data))


@given(st.lists(st.tuples(opcodes, st.binary(max_size=200), masks), max_size=5), st.integers(1, 50))
def test_frame_buffer_reads_frames_however_the_bytes_are_cut(
    specs: list[tuple[int, bytes, bytes | None]], step: int
) -> None:
    data = b"".join(wire.encode_frame(op, payload, mask=mask) for op, payload, mask in specs)
    buffer = wire.FrameBuffer()
    got = []
    for i in range(0, len(data), step):
        buffer.feed(data[i : i + step])
        got += [(f.opcode, f.payload) for f in buffer.frames()]
    assert got == [(op, payload) for op, payload, _ in specs]
    assert not buffer.buffer


def test_incomplete_frames_are_not_parsed() -> None:
    data = wire.client_frame(wire.BINARY, b"x" * 300)
    assert all(wire.parse_frame(data[:cut]) is None for cut in range(len(data)))
    with pytest.raises(ValueError, match="inside a frame"):
        wire.parse_frames(data + data[:3])


def test_frame_header_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="7, 16 or 64"):
        wire.frame_header(wire.TEXT, 1, length_bits=32)
    with pytest.raises(ValueError, match="4 bytes"):
        wire.frame_header(wire.TEXT, 1, mask=b"abc")


def test_known_bytes() -> None:
    # RFC 6455 section 5.7's examples.
    assert wire.server_frame(wire.TEXT, b"Hello") == b"\x81\x05Hello"
    masked = wire.client_frame(wire.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d")
    assert masked == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert (
        wire.encode_frame(wire.TEXT, b"Hel", fin=False) + wire.encode_frame(wire.CONTINUATION, b"lo")
        == b"\x01\x03Hel\x80\x02lo"
    )
    assert wire.server_frame(wire.BINARY, bytes(256))[:4] == b"\x82\x7e\x01\x00"
    assert wire.server_frame(wire.BINARY, bytes(65536))[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")


@given(payloads, st.booleans())
def test_text_frame_is_one_message(payload: bytes, client: bool) -> None:
    (frame,) = wire.parse_frames(wire.text_frame(payload, client=client))
    assert (frame.opcode, frame.fin, frame.masked, frame.payload) == (wire.TEXT, True, client, payload)


@given(st.integers(1000, 4999), st.text(max_size=40))
def test_close_payload_round_trips(code: int, reason: str) -> None:
    assert wire.parse_close(wire.close_payload(code, reason)) == (code, reason.encode())
    assert wire.parse_close(wire.close_payload(None)) == (None, b"")


def test_handshake_is_session_rs_byte_for_byte() -> None:
    # The capture of a session-rs client and server (docs/protocol.md).
    assert wire.upgrade_request() == (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9101\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: vd2wAgQkrd3IegFCB5L43Q==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert wire.switching_protocols() == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: Oru0+maGfqLIC22es8Lg7asg6T8=\r\n\r\n"
    )
    # RFC 6455 section 1.3's example key.
    assert wire.accept_token("dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    key = wire.new_key()
    request = wire.upgrade_request("x:1", "/p", key=key, headers=(("X-A", "b"),))
    assert wire.request_key(request.replace(b"Sec-WebSocket-Key", b"sec-websocket-KEY")) == key
    assert wire.accept_response(request) == wire.switching_protocols(key)
    assert wire.read_head(request + b"rest") == (request, b"rest")
    assert wire.read_head(request[:-1]) is None
    with pytest.raises(ValueError, match="no Sec-WebSocket-Key"):
        wire.request_key(b"GET / HTTP/1.1\r\n\r\n")


# -- against wsproto's parser ------------------------------------------------------------

# Frames wsproto accepts: data frames of any length, control frames final and <= 125 bytes,
# text that is valid UTF-8 (wsproto decodes it as it goes), close with a valid code or none.
data_frames = st.one_of(
    st.tuples(st.just(wire.BINARY), payloads),
    st.tuples(st.just(wire.TEXT), st.text(max_size=200).map(str.encode)),
)
control_frames = st.one_of(
    st.tuples(st.sampled_from([wire.PING, wire.PONG]), st.binary(max_size=125)),
    st.tuples(
        st.just(wire.CLOSE),
        st.tuples(st.sampled_from([1000, 1001, 1003, 1008, 3000, 4999]), st.text(max_size=30)).map(
            lambda cr: wire.close_payload(*cr)
        ),
    ),
)


def _wsproto_frames(data: bytes, *, to_client: bool) -> list[tuple[int, bytes]]:
    parser = FrameProtocol(client=to_client, extensions=[])
    parser.receive_bytes(data)
    frames = []
    for frame in parser.received_frames():
        assert frame.frame_finished and frame.message_finished
        if isinstance(frame.payload, tuple):  # a close frame: (code, reason)
            code, reason = frame.payload
            payload = wire.close_payload(int(code), reason)
        elif isinstance(frame.payload, str):
            payload = frame.payload.encode()
        else:
            payload = bytes(frame.payload)
        frames.append((int(frame.opcode), payload))
    return frames


@given(st.lists(data_frames | control_frames, min_size=1, max_size=4), st.booleans())
def test_wsproto_reads_our_frames_as_we_do(specs: list[tuple[int, bytes]], from_client: bool) -> None:
    data = b"".join(
        wire.client_frame(op, payload) if from_client else wire.server_frame(op, payload)
        for op, payload in specs
    )
    ours = [(f.opcode, f.payload) for f in wire.parse_frames(data)]
    assert ours == specs
    # A close frame ends what wsproto reads; compare up to and including it.
    upto = next((i + 1 for i, (op, _) in enumerate(specs) if op == wire.CLOSE), len(specs))
    assert _wsproto_frames(data, to_client=not from_client) == specs[:upto]


@given(st.lists(data_frames | control_frames, min_size=1, max_size=4), st.booleans())
def test_we_read_wsproto_frames_as_it_does(specs: list[tuple[int, bytes]], client: bool) -> None:
    writer = FrameProtocol(client=client, extensions=[])
    data = b""
    for op, payload in specs:
        if op == wire.CLOSE:
            code, reason = wire.parse_close(payload)
            data += writer.close(code, reason.decode())
        elif op == wire.PING:
            data += writer.ping(payload)
        elif op == wire.PONG:
            data += writer.pong(payload)
        else:
            data += writer.send_data(payload if op == wire.BINARY else payload.decode(), fin=True)
    frames = wire.parse_frames(data)
    assert [(f.opcode, f.payload, f.fin, f.masked) for f in frames] == [
        (op, payload, True, client) for op, payload in specs
    ]


@given(opcodes, payloads, masks)
def test_bytes_needed_reads_a_frame_exactly(opcode: int, payload: bytes, mask: bytes | None) -> None:
    data = wire.encode_frame(opcode, payload, mask=mask)
    read = b""
    steps = 0
    while len(read) < (needed := wire.bytes_needed(read)):
        read += data[len(read) : needed]
        steps += 1
    assert read == data
    assert steps <= 3  # the first two bytes, the rest of the header, the payload
