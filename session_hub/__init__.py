"""session_hub: sessions across processes and machines, over Redis or in one process.

Groups, broadcast, notifications and requests to any session wherever it lives, and
presence. `open_hub()` gives an in-process hub (nothing to install); `open_hub("redis://...")`
a Redis-backed one (`session-py[redis]`). The decisions (envelopes, routing, sequence
numbers, gaps, leases, backoff) are sans-I/O (`Node`); the I/O is written once with anyio
and runs under both adapters. See `docs/hub.md`.
"""

from __future__ import annotations

from ._envelope import VERSION, Envelope, Kind, Outcome, decode, encode
from ._errors import HubError, HubUnavailable, InvalidEnvelope, MessageTooLarge, SessionNotFound
from ._hub import QUEUE_FULL_CLOSE_CODE, Hub, LocalSession, open_hub
from ._node import Gap, HubConfig, Node

__all__ = [
    "QUEUE_FULL_CLOSE_CODE",
    "VERSION",
    "Envelope",
    "Gap",
    "Hub",
    "HubConfig",
    "HubError",
    "HubUnavailable",
    "InvalidEnvelope",
    "Kind",
    "LocalSession",
    "MessageTooLarge",
    "Node",
    "Outcome",
    "SessionNotFound",
    "decode",
    "encode",
    "open_hub",
]
