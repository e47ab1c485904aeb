"""Fuzz cases decoded from plain bytes, for coverage-guided fuzzers (atheris, libFuzzer).

Every byte string decodes to a valid `Case`: the bytes choose the role, the limits and a
list of operations, and supply payloads. Running out of bytes reads zeros, so short inputs
give short cases. The mapping is stable, so that a saved crash input replays the same case.
"""

from __future__ import annotations

from session_core import Config, Role

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
)
from .pieces import METHODS, RAW_KEYS, RAW_VALUES, TYPES

CONFIGS = (
    Config(),
    Config(max_message_size=300, max_incoming_requests=1, remembered_ids=1),
    Config(max_message_size=4096, max_incoming_requests=2, max_pending_requests=2),
    Config(keepalive_interval=1.0, keepalive_timeout=0.5, close_timeout=1.0, request_timeout=0.5),
    Config(max_message_size=None, expose_internal_errors=True, handshake_timeout=None, close_timeout=None),
)
CHUNKS = (None, None, None, 1, 2, 3, 7, 64)
ADVANCES = (0.0, 0.1, 0.5, 1.0, 2.0, 30.0)
ACTIONS = tuple(Action)
TEMPLATES = (
    '{"type":"request","id":%s,"method":%s,"data":%s}',
    '{"type":"notification","method":%s,"data":%s}',
    '{"type":"response","id":%s,"result":%s}',
    '{"type":"errorresponse","id":%s,"error":%s}',
    '{"type":%s,"id":%s,"method":%s,"data":%s,"type":%s}',
    '{"data":%s,"id":%s,"method":%s,"type":"request","id":%s}',
)
SMALL_IDS = ("1", "2", "3", "0", "4294967295")


class Reader:
    """Reads a byte string front to back; past its end, reads zeros and empty strings."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def pick(self, choices: tuple[str, ...]) -> str:
        return choices[self.byte() % len(choices)]


def _value(reader: Reader) -> str:
    selector = reader.byte()
    if selector < 96:
        return reader.pick(SMALL_IDS)
    if selector < 224:
        return reader.pick(RAW_VALUES)
    return reader.pick(TYPES + METHODS)


def _text(reader: Reader) -> bytes:
    selector = reader.byte()
    if selector < 48:  # raw bytes: anything at all, invalid UTF-8 included
        return reader.take(reader.byte())
    if selector < 176:  # a template with its holes filled
        template = TEMPLATES[selector % len(TEMPLATES)]
        holes = []
        for index in range(template.count("%s")):
            before = template.split("%s")[index]
            if before.endswith('"method":'):
                holes.append(reader.pick(METHODS))
            elif before.endswith('"type":'):
                holes.append(reader.pick(TYPES))
            else:
                holes.append(_value(reader))
        text = template % tuple(holes)
    elif selector < 240:  # fields chosen one by one
        fields = [f"{reader.pick(RAW_KEYS)}:{_value(reader)}" for _ in range(reader.byte() % 6)]
        text = "{" + ",".join(fields) + "}"
    else:
        text = reader.pick(RAW_VALUES)
    data = text.encode("utf-8", "surrogatepass")
    cut = reader.byte()
    if cut >= 240 and data:  # truncate, or slip in a byte
        at = reader.byte() % len(data)
        data = data[:at] if cut % 2 else data[:at] + bytes([reader.byte()]) + data[at:]
    return data


def _op(reader: Reader) -> Op:
    kind = reader.byte() % 16
    if kind <= 6:
        return Message(_text(reader), pieces=1 + reader.byte() % 4, ping_between=reader.byte() % 4 == 0)
    if kind <= 8:
        flags = reader.byte()
        return Frame(
            opcode=reader.byte() % 16,
            payload=reader.take(reader.byte() % 160),
            fin=not flags & 1,
            rsv=(flags & 0x70) if flags & 0x80 else 0,
            wrong_mask=flags & 0x0E == 0x0E,
            length_form=(flags >> 1) % 3 if flags & 0x08 else 0,
        )
    if kind == 9:
        return Feed(reader.take(reader.byte() % 64))
    if kind == 10:
        return Advance(ADVANCES[reader.byte() % len(ADVANCES)])
    return Local(ACTIONS[reader.byte() % len(ACTIONS)], reader.byte())


def case_from_bytes(data: bytes, *, max_ops: int = 48) -> Case:
    """The case that `data` encodes."""
    reader = Reader(data)
    flags = reader.byte()
    role = Role.CLIENT if flags & 1 else Role.SERVER
    handshake = None
    if flags & 0x30 == 0x30:  # a raw handshake from the input (rarely opens, by design)
        raw = reader.take(reader.byte() * 2)
        handshake = raw if role is Role.SERVER else RESPONSE_TEMPLATE[: reader.byte() % 120] + raw
    ops: list[Op] = []
    if role is Role.CLIENT:
        ops += [Local(Action.REQUEST, 0), Local(Action.TYPED_REQUEST, 1), Local(Action.REQUEST, 2)]
    config = CONFIGS[reader.byte() % len(CONFIGS)]
    chunk = CHUNKS[reader.byte() % len(CHUNKS)]
    while not reader.done and len(ops) < max_ops:
        ops.append(_op(reader))
    return Case(
        role=role,
        typed=bool(flags & 2),
        config=config,
        ops=tuple(ops),
        chunk=chunk,
        wait_for_start=bool(flags & 4),
        handshake=handshake,
    )
