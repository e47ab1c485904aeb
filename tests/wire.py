"""The WebSocket wire, written by hand: the one frame codec of the tests and the fuzzer.

Tests that play a peer this project did not write (session-rs, a hostile client, a peer that
stops mid-frame) build and read bytes with this module rather than with the code under
test, so that a bug in `session_core`'s framing cannot hide itself. It can write what no
well-behaved peer writes: any opcode, RSV bits, a wrong mask, a length in a longer form
than needed.

- frames: `encode_frame`, `frame_header`, `apply_mask`, `client_frame`, `server_frame`,
  `text_frame`; read back with `parse_frame` (one frame from the front of a buffer, or
  `None` while incomplete), `parse_frames` (whole frames only) or `FrameBuffer` (bytes in
  as they come, frames out).
- close frames: `close_payload`, `parse_close`.
- the handshake: `upgrade_request` (session-rs's client request, header for header),
  `switching_protocols` (session-rs's server 101), `accept_token`, `request_key`,
  `accept_response`, `read_head`.

The protocol these bytes follow is described in `docs/protocol.md`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Iterator

import attrs

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"RFC 6455's constant that `Sec-WebSocket-Accept` hashes with the key."

#: The key of session-rs's captured upgrade request, and the accept token it implies.
SESSION_RS_KEY = b"vd2wAgQkrd3IegFCB5L43Q=="
SESSION_RS_ACCEPT_TOKEN = b"Oru0+maGfqLIC22es8Lg7asg6T8="
#: Where session-rs's captured client connected (the `Host` of its request).
SESSION_RS_HOST = "127.0.0.1:9101"

#: The length forms a frame header can use, by the number of bits of the length.
LENGTH_BITS = (7, 16, 64)


# -- frames ------------------------------------------------------------------------------


def apply_mask(mask: bytes, payload: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `mask`: masking and unmasking alike."""
    if not payload or not mask:
        return payload
    # One big-integer XOR instead of a Python loop per byte: megabyte payloads stay fast.
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        len(payload), "little"
    )


def minimal_length_bits(length: int) -> int:
    """The shortest length form that holds `length`: 7, 16 or 64 bits."""
    return 7 if length < 126 else 16 if length < 1 << 16 else 64


def frame_header(
    opcode: int,
    length: int,
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
    length_bits: int | None = None,
) -> bytes:
    """The header of a frame, with its masking key when `mask` (4 bytes) is given.

    Args:
        opcode: any 4-bit value, valid or not.
        length: the payload length the header announces.
        fin: the FIN bit.
        mask: the masking key, or `None` for an unmasked frame.
        rsv: OR-ed into the first byte (only its bits 0x70 count): RSV1..3.
        length_bits: force the 7-, 16- or 64-bit length form (a non-minimal form is what
            RFC 6455 forbids, for fuzzing); `None` for the shortest.

    Raises:
        ValueError: `length_bits` is not 7, 16 or 64, or too short for `length`.
    """
    bits = minimal_length_bits(length) if length_bits is None else length_bits
    if bits not in LENGTH_BITS:
        raise ValueError(f"length_bits must be 7, 16 or 64, not {bits}")
    if length >= 1 << 63 or (bits == 7 and length >= 126) or (bits == 16 and length >= 1 << 16):
        raise ValueError(f"a length of {length} does not fit in {bits} bits")
    first = (0x80 if fin else 0) | (rsv & 0x70) | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not None else 0
    if bits == 7:
        head = struct.pack("!BB", first, mask_bit | length)
    elif bits == 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if mask is None:
        return head
    if len(mask) != 4:
        raise ValueError("a masking key is 4 bytes")
    return head + mask


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv: int = 0,
    length_bits: int | None = None,
) -> bytes:
    """One whole frame: `frame_header(...)` then the payload, masked with `mask` if given."""
    header = frame_header(opcode, len(payload), fin=fin, mask=mask, rsv=rsv, length_bits=length_bits)
    return header + (apply_mask(mask, payload) if mask is not None else payload)


def new_mask() -> bytes:
    """A fresh random masking key, as a client must use for each frame."""
    return os.urandom(4)


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A frame as a client sends it: masked, with `mask` or a fresh random key."""
    return encode_frame(opcode, payload, fin=fin, mask=new_mask() if mask is None else mask)


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A frame as a server sends it: unmasked."""
    return encode_frame(opcode, payload, fin=fin)


def text_frame(text: str | bytes, *, client: bool = False, mask: bytes | None = None) -> bytes:
    """One unfragmented text message: masked (randomly, unless `mask`) when from a client."""
    payload = text.encode() if isinstance(text, str) else text
    return client_frame(TEXT, payload, mask=mask) if client else server_frame(TEXT, payload)


@attrs.frozen
class Frame:
    """A frame read from the wire, its payload unmasked."""

    opcode: int
    payload: bytes
    fin: bool = True
    masked: bool = False
    rsv: int = 0
    "The RSV bits as they stand in the first byte (0x70 mask)."
    minimal_length: bool = True
    "Whether the length used the shortest form, as RFC 6455 requires."

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode()


def parse_frame(data: bytes | bytearray, start: int = 0) -> tuple[Frame, int] | None:
    """The frame at `data[start:]` and the offset just past it, or `None` if incomplete."""
    end = len(data)
    if end - start < 2:
        return None
    first, second = data[start], data[start + 1]
    length, pos = second & 0x7F, start + 2
    minimal = True
    if length == 126:
        if end - pos < 2:
            return None
        length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        minimal = length >= 126
    elif length == 127:
        if end - pos < 8:
            return None
        length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        minimal = length >= 1 << 16
    masked = bool(second & 0x80)
    mask = b""
    if masked:
        if end - pos < 4:
            return None
        mask, pos = bytes(data[pos : pos + 4]), pos + 4
    if end - pos < length:
        return None
    payload = bytes(data[pos : pos + length])
    frame = Frame(
        opcode=first & 0x0F,
        payload=apply_mask(mask, payload) if masked else payload,
        fin=bool(first & 0x80),
        masked=masked,
        rsv=first & 0x70,
        minimal_length=minimal,
    )
    return frame, pos + length


def bytes_needed(data: bytes | bytearray) -> int:
    """How many bytes the frame at the start of `data` takes in all, as far as the part of its
    header in `data` tells: read up to that, again, until `data` is that long.

    Lets a reader on a stream read a frame exactly, never past its end.
    """
    if len(data) < 2:
        return 2
    length, header = data[1] & 0x7F, 2 + (4 if data[1] & 0x80 else 0)
    extended = {126: 2, 127: 8}.get(length, 0)
    header += extended
    if extended:
        if len(data) < 2 + extended:
            return header
        length = int.from_bytes(data[2 : 2 + extended], "big")
    return header + length


def parse_frames(data: bytes | bytearray) -> list[Frame]:
    """Every frame in `data`, which must hold whole frames only.

    Raises:
        ValueError: `data` ends inside a frame.
    """
    frames = []
    pos = 0
    while pos < len(data):
        parsed = parse_frame(data, pos)
        if parsed is None:
            raise ValueError(f"the bytes end inside a frame: {bytes(data[pos : pos + 16])!r}...")
        frame, pos = parsed
        frames.append(frame)
    return frames


class FrameBuffer:
    """Bytes in as they arrive, in any pieces; whole frames out, in order."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Add bytes received."""
        self.buffer += data

    def next_frame(self) -> Frame | None:
        """The next whole frame (taken out of the buffer), or `None` until one is complete."""
        parsed = parse_frame(self.buffer)
        if parsed is None:
            return None
        frame, used = parsed
        del self.buffer[:used]
        return frame

    def frames(self) -> Iterator[Frame]:
        """Every whole frame buffered so far."""
        while (frame := self.next_frame()) is not None:
            yield frame


# -- close frames --------------------------------------------------------------------------


def close_payload(code: int | None = None, reason: str | bytes = "") -> bytes:
    """A close frame's payload: the status code and reason, or empty when `code` is `None`."""
    if code is None:
        return b""
    return struct.pack("!H", code) + (reason.encode() if isinstance(reason, str) else reason)


def parse_close(payload: bytes) -> tuple[int | None, bytes]:
    """A close frame's status code (`None` when it has none) and raw reason bytes."""
    if len(payload) < 2:
        return None, b""
    return int.from_bytes(payload[:2], "big"), payload[2:]


# -- the handshake ---------------------------------------------------------------------------


def new_key() -> bytes:
    """A fresh `Sec-WebSocket-Key`: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16))


def accept_token(key: bytes | str) -> bytes:
    """The `Sec-WebSocket-Accept` value that answers `key`."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + GUID).digest())


def upgrade_request(
    host: str = SESSION_RS_HOST,
    path: str = "/",
    *,
    key: bytes | str = SESSION_RS_KEY,
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """An upgrade request with session-rs's client's headers, in its order, then `headers`.

    With the defaults it is session-rs's captured request, byte for byte.
    """
    key_text = key.decode() if isinstance(key, bytes) else key
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key_text}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def switching_protocols(key: bytes | str = SESSION_RS_KEY) -> bytes:
    """The 101 of session-rs's server answering `key`: these headers, in this order."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_token(key) + b"\r\n\r\n"
    )


def request_key(request: bytes) -> bytes:
    """The `Sec-WebSocket-Key` of an upgrade request's head (the header name in any case).

    Raises:
        ValueError: the request has none.
    """
    for line in request.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"sec-websocket-key":
            return value.strip()
    raise ValueError(f"no Sec-WebSocket-Key in {request[:200]!r}")


def accept_response(request: bytes) -> bytes:
    """session-rs's 101 answering an upgrade request's head."""
    return switching_protocols(request_key(request))


def read_head(data: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """Split `data` after an HTTP head: `(head, rest)`, or `None` while the head is incomplete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    return bytes(data[: end + 4]), bytes(data[end + 4 :])
