"""The opening handshake as a session sees it: its end, the upgrade hook, and `on_session`.

A client's handshake ends with the server's answer; a server's with the decision on the
upgrade request, which an upgrade hook (sync or async) may make. Callers of
`wait_handshake` wait for the end and learn how it went. `serve_session` is what a server
runs for each session once its handshake is over.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._config import Reject
from .._errors import HandshakeError, HandshakeRejected, SessionClosed
from .._events import ConnectionClosed, HandshakeAccepted, UpgradeRejected, UpgradeRequested
from .._server import ServerConnection
from .._state import State
from ._pump import Pump

if TYPE_CHECKING:
    # The public aliases are defined (and documented) in the package's `__init__`.
    from . import Decision, UpgradeHook
    from ._hub import SessionHub
    from ._session import SessionDriver

__all__ = ["Handshake", "serve_session", "upgrade_decision"]

W = TypeVar("W")
H = TypeVar("H")
S = TypeVar("S", bound="SessionDriver[Any, Any]")


async def upgrade_decision(
    hook: UpgradeHook | None, request: UpgradeRequested, remote_address: Any, logger: logging.Logger
) -> Decision:
    """Ask an upgrade hook, sync or async, for its decision on `request`.

    No hook accepts. A hook that raises rejects with 500 (logged on `logger`), so that a
    faulty hook never leaves a client waiting; what it returns is checked by
    `Connection.decide`.
    """
    if hook is None:
        return None
    try:
        decision = hook(request, remote_address)
        if inspect.isawaitable(decision):
            decision = await decision
    except Exception:
        logger.exception("on_upgrade failed; rejecting the upgrade from %r with 500", remote_address)
        return Reject(status_code=500)
    return decision


async def serve_session(
    session: S, on_session: Callable[[S], Awaitable[object]], *, hub: SessionHub | None = None
) -> None:
    """Server: once the handshake of `session` is over, run `on_session(session)` on it.

    A handshake that failed (rejected, timed out, the client left) ends here. With `hub`,
    the session gets an id from the hub and is attached to it before `on_session` runs
    (detached when it ends). The session
    delivers no message before `on_session` first yields, so that it registers its handlers
    first. `on_session` returning does not close the session; `SessionClosed` from it is
    the session ending under it (logged at debug); any other exception is logged and
    closes the session with 1011.
    """
    try:
        await session.wait_handshake()
    except HandshakeError:
        return
    if hub is not None:
        session._attach_hub(hub)
    logger = session._logger
    try:
        await session._begin(_awaited(on_session(session)))
    except SessionClosed as exc:
        logger.debug("on_session ended with the session: %s", exc)
    except Exception:
        logger.exception("on_session failed; closing the session with 1011")
        await session.close(1011, "internal error")


async def _awaited(awaitable: Awaitable[object]) -> object:
    # `_begin` steps a coroutine; `on_session` may return any awaitable.
    return await awaitable


class Handshake(Pump[W, H]):
    """The end of the opening handshake, its waiters, and a server's upgrade decision."""

    _upgrade_hook: UpgradeHook | None
    _handshake_over: bool
    _handshake_error: HandshakeError | None
    _handshake_waiters: list[W]

    @property
    def handshake_over(self) -> bool:
        """Whether the opening handshake has ended, opening the session or failing."""
        return self._handshake_over

    async def wait_handshake(self) -> None:
        """Wait until the opening handshake is over.

        Raises:
            HandshakeRejected: (client) the server answered with an HTTP error.
            HandshakeError: the handshake failed otherwise (the connection ended first, an
                invalid response or request, the handshake timeout, a rejected upgrade).
        """
        if not self._handshake_over:
            waiter = self._new_waiter()
            self._handshake_waiters.append(waiter)
            try:
                await self._park(waiter)
            except BaseException:
                if waiter in self._handshake_waiters:
                    self._handshake_waiters.remove(waiter)
                raise
        if self._handshake_error is not None:
            raise self._handshake_error

    def _end_handshake(self) -> None:
        self._handshake_over = True
        waiters, self._handshake_waiters = self._handshake_waiters, []
        for waiter in waiters:
            self._wake(waiter, None)

    # -- events ------------------------------------------------------------------------

    def _on_upgrade_requested(self, event: UpgradeRequested) -> None:
        if self._upgrade_hook is None:
            self._decide(None)
        else:
            # In a task of the session: cancelled if the connection ends first (the
            # handshake timeout, the client leaving), when there is nothing left to decide.
            self._spawn(self._ask_upgrade_hook(event))

    async def _ask_upgrade_hook(self, event: UpgradeRequested) -> None:
        self._decide(await upgrade_decision(self._upgrade_hook, event, self._remote_address, self._logger))

    def _decide(self, decision: Decision) -> None:
        conn = self._conn
        if not isinstance(conn, ServerConnection) or conn.state is not State.UPGRADE_REQUESTED:
            return  # the handshake timed out or the client left while the hook ran
        conn.decide(decision, now=self._now())
        if not self.closed:  # accepted
            self._end_handshake()
        self._pump()

    def _on_handshake_accepted(self, event: HandshakeAccepted) -> None:
        self._end_handshake()

    def _on_upgrade_rejected(self, event: UpgradeRejected) -> None:
        self._handshake_error = HandshakeRejected(event.status_code, event.headers, event.body)

    def _handshake_failed(self, event: ConnectionClosed) -> None:
        # The connection ended: a handshake not over by now failed.
        if not self._handshake_over:
            if self._handshake_error is None:
                self._handshake_error = HandshakeError(event.reason)
            self._end_handshake()
