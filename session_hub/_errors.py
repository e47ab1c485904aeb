"""The hub's exceptions, under the project's one hierarchy (`session_core.SessionError`).

```
SessionError
└── HubError                  the hub could not do what was asked
    ├── SessionNotFound       no node holds this session id
    ├── HubUnavailable        the broker cannot be reached (now); local delivery still works
    ├── MessageTooLarge       refused before publishing: over `HubConfig.max_message_size`
    └── InvalidEnvelope       bytes from the broker that are not a hub envelope
```
"""

from __future__ import annotations

from session_core import SessionError


class HubError(SessionError):
    """Base class of the hub's exceptions."""


class SessionNotFound(HubError):
    """No node holds a session with this id (it ended, or never existed).

    Raised at once (one round trip at most), never after a timeout.
    """

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r} in the cluster")
        self.session_id = session_id


class HubUnavailable(HubError):
    """The broker cannot be reached, or lost the message's route: retry later.

    Raised at once while the hub is disconnected, and to requests whose answer may have been
    lost (the broker connection dropped, or a gap was seen from the answering node). The
    hub reconnects by itself; sessions attached to this node keep receiving local messages.
    """


class MessageTooLarge(HubError):
    """The encoded message is over `HubConfig.max_message_size`; nothing was published."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes is over the hub's limit of {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidEnvelope(HubError):
    """Bytes received from the broker that are not a valid hub envelope (of this version)."""
