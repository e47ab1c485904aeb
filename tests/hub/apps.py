"""The application the hub tests serve, in one process or in worker processes.

`on_session` is loop-agnostic (it uses only the session and hub API), so the same code runs
under trio, asyncio and uvloop, in a test's own process or in workers started by
`session-py serve tests.hub.apps:on_session`. A client drives its node through the
requests below; the methods a client answers (`WHOAMI`, `FAIL`, `HANG`) and the
notification it receives (`CHAT`) are defined here too, with `Client`.
"""

from __future__ import annotations

from typing import Any

import anyio

from session_core import (
    Method,
    MethodError,
    RemoteError,
    SessionClosed,
)
from session_core.driver import SessionDriver
from session_hub import HubUnavailable, SessionNotFound

# -- what a client asks of its node ----------------------------------------------------------

JOIN: Method[str, str, None] = Method("join", request=str, response=str, error=None)
"Join a group; answers the session's id."
LEAVE: Method[str, None, None] = Method("leave", request=str, response=None, error=None)
BROADCAST: Method[list[str], None, str] = Method("broadcast", request=list[str], response=None, error=str)
"`[group, text]`: `hub.broadcast(group, CHAT, text)`."
NOTIFY: Method[list[str], None, str] = Method("notify", request=list[str], response=None, error=str)
"`[session_id, text]`: `hub.notify(session_id, CHAT, text)`; an error names the exception."
ASK: Method[list[Any], str, None] = Method("ask", request=list[Any], response=str, error=None)
"""`[session_id, method, timeout]`: `hub.request` of `WHOAMI`, `FAIL` or `HANG`; answers
`"result:<value>"`, `"RemoteError:<error>"` or the name of the exception raised."""
MEMBERS: Method[str, list[str], str] = Method("members", request=str, response=list[str], error=str)
STATS: Method[None, dict[str, Any], None] = Method("stats", request=None, response=dict[str, Any], error=None)
"The node's id, `connected`, `lost_messages`."

# -- what a client answers ---------------------------------------------------------------------

WHOAMI: Method[None, str, str] = Method("whoami", request=None, response=str, error=str)
FAIL: Method[None, str, str] = Method("fail", request=None, response=str, error=str)
HANG: Method[None, str, str] = Method("hang", request=None, response=str, error=str)
CHAT: Method[str, None, None] = Method("chat", request=str, response=None, error=None)

_CALLS = {"whoami": WHOAMI, "fail": FAIL, "hang": HANG}


async def on_session(session: SessionDriver[Any, Any]) -> None:
    """Serve the requests above on `session` (served with a hub)."""
    hub = session.hub
    assert hub is not None, "serve this app with a hub"

    @session.on_request(JOIN)
    async def _join(group: str) -> str:
        await session.join(group)
        return str(session.id)

    @session.on_request(LEAVE)
    async def _leave(group: str) -> None:
        await session.leave(group)

    @session.on_request(BROADCAST)
    async def _broadcast(args: list[str]) -> None:
        try:
            await hub.broadcast(args[0], CHAT, args[1])
        except HubUnavailable as exc:
            raise MethodError(type(exc).__name__) from None

    @session.on_request(NOTIFY)
    async def _notify(args: list[str]) -> None:
        try:
            await hub.notify(args[0], CHAT, args[1])
        except (HubUnavailable, SessionNotFound) as exc:
            raise MethodError(type(exc).__name__) from None

    @session.on_request(ASK)
    async def _ask(args: list[Any]) -> str:
        target, name, timeout = args
        try:
            result = await hub.request(target, _CALLS[name], None, timeout=timeout)
        except RemoteError as exc:
            return f"RemoteError:{exc.error}"
        except (TimeoutError, SessionClosed, SessionNotFound, HubUnavailable) as exc:
            return type(exc).__name__
        return f"result:{result}"

    @session.on_request(MEMBERS)
    async def _members(group: str) -> list[str]:
        try:
            return sorted(await hub.members(group))
        except HubUnavailable as exc:
            raise MethodError(type(exc).__name__) from None

    @session.on_request(STATS)
    async def _stats(_: None) -> dict[str, Any]:
        return {"node": hub.node_id, "connected": hub.connected, "lost": hub.lost_messages}


class Client:
    """A client session's side: answers `WHOAMI`, `FAIL`, `HANG`; records `CHAT`."""

    def __init__(self, session: SessionDriver[Any, Any], name: str) -> None:
        """Register the handlers on `session` (before its first await)."""
        self.session = session
        self.name = name
        self.chats: list[str] = []
        self.hanging = 0
        self.cancelled = 0

        @session.on_request(WHOAMI)
        async def _whoami(_: None) -> str:
            return name

        @session.on_request(FAIL)
        async def _fail(_: None) -> str:
            raise MethodError(f"{name} fails")

        @session.on_request(HANG)
        async def _hang(_: None) -> str:
            self.hanging += 1
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                if not session.closed:  # given up by the requester (`$/cancel`)
                    self.cancelled += 1
                raise
            raise AssertionError("unreachable")

        @session.on_notification(CHAT)
        async def _chat(text: str) -> None:
            self.chats.append(text)

    async def wait_chats(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until `count` chats arrived; return them all (a short settle for duplicates)."""
        with anyio.fail_after(timeout):
            while len(self.chats) < count:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        return list(self.chats)
