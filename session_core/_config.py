"""What a user sets before and during the handshake: `Config`, `Role`, `Accept`, `Reject`,
and the close codes (`CloseCode`).

These are the connection's inputs that are not bytes or time. They are attrs classes built
by users, so they validate what they are given; nothing here is on the message path.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs


class CloseCode(enum.IntEnum):
    """The close codes this project sends or reports (RFC 6455 section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    NO_STATUS = 1005
    "Received only: a close frame without a code (session-rs sends those), a normal end."
    ABNORMAL_CLOSURE = 1006
    "Reported only: the connection ended without a close frame."
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    "Sent by applications (and a reconnecting client never retries after it)."
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    "Sent by the hub to a session whose outgoing queue is full (a client too slow)."


NORMAL_CLOSURE = CloseCode.NORMAL_CLOSURE
ABNORMAL_CLOSURE = CloseCode.ABNORMAL_CLOSURE
MESSAGE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
INTERNAL_ERROR = CloseCode.INTERNAL_ERROR


class Role(enum.Enum):
    """Which end of the WebSocket connection this is."""

    CLIENT = "client"
    SERVER = "server"


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, not {value!r}")


@attrs.frozen(kw_only=True)
class Config:
    """Limits and timeouts of a connection. `None` turns a limit or a timer off."""

    max_message_size: int | None = attrs.field(default=1 << 20, validator=_positive)
    "Largest message accepted, in bytes (1 MiB, as websockets). Over it: close 1009."
    max_incoming_requests: int = attrs.field(default=128, validator=_positive)
    """Requests from the peer in flight at once. At the bound, reading pauses: nothing more
    is read (pings and close frames included) until a handler answers. The keepalive does
    not count that time against the peer."""
    max_pending_requests: int = attrs.field(default=65536, validator=_positive)
    "Our own requests waiting for answers; one more raises `TooManyPendingRequests`."
    request_timeout: float | None = attrs.field(default=None, validator=_positive)
    "Default timeout of our requests, when `send_request` gives none."
    keepalive_interval: float | None = attrs.field(default=20.0, validator=_positive)
    "Seconds between keepalive pings."
    keepalive_timeout: float | None = attrs.field(default=20.0, validator=_positive)
    "Seconds to wait for a pong before failing the connection with 1011."
    handshake_timeout: float | None = attrs.field(default=10.0, validator=_positive)
    "Seconds for the opening handshake (both roles) before dropping the connection."
    close_timeout: float | None = attrs.field(default=10.0, validator=_positive)
    "Seconds to wait for the peer's close frame after sending ours."
    max_rejection_body: int = attrs.field(default=64 * 1024, validator=_positive)
    "Client: bytes of a rejected handshake's body kept for `UpgradeRejected`."
    remembered_ids: int = attrs.field(default=1024, validator=_positive)
    "How many given-up request ids are remembered, to tell a late answer from a bogus one."
    expose_internal_errors: bool = False
    "Put a failing handler's exception text in the -32603 answer (off: it may leak secrets)."


@attrs.frozen(kw_only=True)
class Accept:
    """An upgrade hook's answer: open the session."""

    subprotocol: str | None = None
    "One of the subprotocols the client offered, or `None`."
    headers: tuple[tuple[bytes | str, bytes | str], ...] = ()
    "Extra headers for the 101 response."


@attrs.frozen(kw_only=True)
class Reject:
    """An upgrade hook's answer: refuse with an HTTP error; no session opens."""

    status_code: int = 403
    "The HTTP status, 4xx or 5xx."
    body: bytes = b""
    "The response body."
    headers: tuple[tuple[bytes | str, bytes | str], ...] = ()
    "Extra response headers."


def valid_close_code(code: int) -> bool:
    """Whether we may send `code` in a close frame."""
    # RFC 6455 7.4: 1004-1006 and 1015 are reserved and never sent; 3000-4999 are for
    # libraries and applications.
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def header_bytes(headers: Iterable[tuple[bytes | str, bytes | str]]) -> tuple[tuple[bytes, bytes], ...]:
    """Headers given as `str` or `bytes` pairs, as `bytes` pairs (`str` as Latin-1)."""
    return tuple((_bytes(k), _bytes(v)) for k, v in headers)


def _bytes(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value
