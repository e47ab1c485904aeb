"""A session's place in a hub: its id, the hub it is attached to, and its groups.

The driver layer knows a hub only through `SessionHub`, a protocol, so that it imports no
hub (nor the hub's dependencies).
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from .._errors import LocalProtocolError, SessionClosed
from ._pump import Pump

if TYPE_CHECKING:
    # For `HubMember.hub`'s annotation only: the engine never imports the hub.
    from session_hub import Hub

__all__ = ["HubMember", "SessionHub"]

W = TypeVar("W")
H = TypeVar("H")


class SessionHub(Protocol):
    """What a session needs of a hub (`session_hub.Hub`, from `open_hub`).

    A protocol, so that the driver layer imports no hub (nor the hub's dependencies): a
    server given `hub=` calls these for each of its sessions.
    """

    def new_session_id(self) -> str:
        """A new cluster-unique session id, held by this node."""

    def attach(self, session: Any) -> None:
        """Make `session` (whose `id` came from `new_session_id`) reachable from every node."""

    def detach(self, session: Any) -> None:
        """Forget `session` (it ended): it leaves all its groups. Safe to call twice."""

    async def join(self, session: Any, group: str) -> None:
        """Add `session` to `group`."""

    async def leave(self, session: Any, group: str) -> None:
        """Remove `session` from `group`."""


# Sessions without a hub still have an id: this process's random prefix and a counter, the
# shape of a hub's ids (node, dot, counter), so that logs and maps keyed by id read alike.
_PROCESS_PREFIX = "local-" + secrets.token_hex(4)
_session_numbers = itertools.count(1)


def _local_session_id() -> str:
    return f"{_PROCESS_PREFIX}.{next(_session_numbers)}"


class HubMember(Pump[W, H]):
    """`id`, `hub`, `join` and `leave`, and attaching to a hub and detaching from it."""

    # The session's id (minted when first read, or by the hub it is attached to).
    _id: str | None
    _hub: SessionHub | None

    @property
    def id(self) -> str:
        """This session's id: a string unique across the cluster of its hub.

        A server's sessions given `serve(..., hub=hub)` get theirs from the hub (the node's
        id, a dot, a counter), so that `hub.notify(id, ...)` and `hub.request(id, ...)` reach
        them from any node. Any other session (a client's, a server's without a hub) has one
        unique within this process (and random across processes), of the same shape.
        """
        if self._id is None:
            self._id = _local_session_id()
        return self._id

    @property
    def hub(self) -> Hub | None:
        """The hub this session is attached to (`serve(..., hub=hub)`), or `None`.

        What an application run by the command line (`session-py serve module:on_session
        --hub ...`) uses to reach other sessions: `await session.hub.broadcast(...)`.
        """
        return cast("Hub | None", self._hub)

    async def join(self, group: str) -> None:
        """Join `group` of the session's hub: `hub.broadcast(group, ...)` reaches it.

        A session leaves all its groups when it ends.

        Raises:
            LocalProtocolError: the session has no hub (it was not served with `hub=`).
            SessionClosed: the session has ended.
        """
        hub = self._hub_or_raise()
        if self.closed:
            raise SessionClosed(self._conn.close_code or 1006, self._conn.close_reason or "")
        await hub.join(self, group)

    async def leave(self, group: str) -> None:
        """Leave `group` (nothing happens if the session is not a member, or has ended).

        Raises:
            LocalProtocolError: the session has no hub (it was not served with `hub=`).
        """
        hub = self._hub_or_raise()
        if not self.closed:
            await hub.leave(self, group)

    def _hub_or_raise(self) -> SessionHub:
        # A clear error rather than an implicit hub: groups without a hub would reach no
        # one, and a silently private hub would hide a forgotten `hub=` in production.
        if self._hub is None:
            raise LocalProtocolError("this session has no hub: serve(..., hub=hub) gives its sessions one")
        return self._hub

    def _attach_hub(self, hub: SessionHub) -> None:
        """Take an id from `hub` and attach to it (a server does, after the handshake)."""
        if self.closed:
            return  # ended already: it would never be detached
        self._id = hub.new_session_id()
        self._hub = hub
        hub.attach(self)

    def _detach_hub(self) -> None:
        hub = self._hub
        if hub is not None:
            try:
                hub.detach(self)
            except Exception:
                # The hub may be closed already (it was left before the server): the session
                # ends anyway, and this runs inside the pump, which must not raise.
                self._logger.warning("detaching session %s from its hub failed", self._id, exc_info=True)
