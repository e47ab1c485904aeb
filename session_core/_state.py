"""The connection's states and the inputs that move it between them.

Design note. A connection has one linear life: the handshake, the open session, the close
handshake, the end. The table below is the whole of it; `Connection._set_state` looks every
change up here, and a missing key is a bug in the caller (a `LocalProtocolError`) or, for
remote inputs, in this module. Message traffic does not change the state and is not here.

    HANDSHAKING ──UPGRADE_RECEIVED──► UPGRADE_REQUESTED ──ACCEPT──► OPEN
         │ (client) ACCEPTED ─────────────────────────────────────►  │
         │                                                            │ CLOSE_SENT
    REJECT, REJECTED, FAIL, LOST, TIMED_OUT ──► CLOSED ◄── ...        ▼
                                                 ▲  ◄─CLOSE_RECEIVED─ CLOSING
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where a connection is in its life."""

    HANDSHAKING = "handshaking"
    "Client: waiting for the 101. Server: waiting for the upgrade request."
    UPGRADE_REQUESTED = "upgrade requested"
    "Server: the request arrived; the user must `accept()` or `reject()`."
    OPEN = "open"
    "Messages flow both ways."
    CLOSING = "closing"
    "We sent a close frame and wait for the peer's."
    CLOSED = "closed"
    "The end: the transport should be closed."


class Input(enum.Enum):
    """What can move a connection to another state."""

    UPGRADE_RECEIVED = "upgrade received"
    ACCEPT = "accept"
    ACCEPTED = "accepted"
    REJECT = "reject"
    REJECTED = "rejected"
    CLOSE_SENT = "close sent"
    CLOSE_RECEIVED = "close received"
    FAIL = "fail"
    LOST = "lost"
    TIMED_OUT = "timed out"


_S, _I = State, Input

TRANSITIONS: dict[tuple[State, Input], State] = {
    (_S.HANDSHAKING, _I.UPGRADE_RECEIVED): _S.UPGRADE_REQUESTED,
    (_S.HANDSHAKING, _I.ACCEPTED): _S.OPEN,
    (_S.HANDSHAKING, _I.REJECTED): _S.CLOSED,
    (_S.HANDSHAKING, _I.FAIL): _S.CLOSED,
    (_S.HANDSHAKING, _I.LOST): _S.CLOSED,
    (_S.HANDSHAKING, _I.TIMED_OUT): _S.CLOSED,
    (_S.UPGRADE_REQUESTED, _I.ACCEPT): _S.OPEN,
    (_S.UPGRADE_REQUESTED, _I.REJECT): _S.CLOSED,
    (_S.UPGRADE_REQUESTED, _I.LOST): _S.CLOSED,
    (_S.UPGRADE_REQUESTED, _I.TIMED_OUT): _S.CLOSED,
    (_S.OPEN, _I.CLOSE_SENT): _S.CLOSING,
    (_S.OPEN, _I.CLOSE_RECEIVED): _S.CLOSED,
    (_S.OPEN, _I.FAIL): _S.CLOSED,
    (_S.OPEN, _I.LOST): _S.CLOSED,
    (_S.CLOSING, _I.CLOSE_RECEIVED): _S.CLOSED,
    (_S.CLOSING, _I.FAIL): _S.CLOSED,
    (_S.CLOSING, _I.LOST): _S.CLOSED,
    (_S.CLOSING, _I.TIMED_OUT): _S.CLOSED,
}
