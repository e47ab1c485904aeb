"""`ServerConnection`: the server's end, which reads the upgrade request and decides."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from . import _frames
from ._config import ABNORMAL_CLOSURE, Accept, Config, Reject, Role, header_bytes
from ._connection import Connection
from ._errors import LocalProtocolError
from ._events import UpgradeRequested
from ._methods import Method
from ._state import Input, State

logger = logging.getLogger("session_core")


class ServerConnection(Connection):
    """The server's end of a session, without I/O.

    It waits for the client's upgrade request; `UpgradeRequested` then asks for
    `accept()` or `reject()` (or `decide()` with an upgrade hook's answer).

    Args:
        now: the current time.
        config: limits and timeouts (`Config()` when `None`).
        methods: the methods served, typed (`None`: untyped); see `Connection`.
        wait_for_start: hold the peer's messages until `start()`.
    """

    __slots__ = ()

    def __init__(
        self,
        *,
        now: float,
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> None:
        super().__init__(Role.SERVER, now=now, config=config, methods=methods, wait_for_start=wait_for_start)

    def accept(
        self,
        *,
        now: float,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> None:
        """Accept the upgrade (after `UpgradeRequested`); the session opens.

        After calling this method: write `data_to_send()` and take the events (input held
        since the upgrade request is processed now).
        """
        if self._state is not State.UPGRADE_REQUESTED:
            raise LocalProtocolError(f"accept() needs an upgrade request, the state is {self._state.value}")
        extra = header_bytes(headers)
        try:
            self._out.append(self._ws.accept(subprotocol, extra))
        except Exception as exc:  # wsproto refuses a subprotocol the client did not offer
            raise LocalProtocolError(str(exc)) from None
        self._set_state(Input.ACCEPT)
        self.subprotocol, self.response_headers = subprotocol, extra
        self._opened(now)
        self._resume()

    def reject(
        self,
        status_code: int = 403,
        body: bytes = b"",
        *,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    ) -> None:
        """Refuse the upgrade with an HTTP response; the connection ends.

        After calling this method: write `data_to_send()` and close the transport.
        """
        if self._state is not State.UPGRADE_REQUESTED:
            raise LocalProtocolError(f"reject() needs an upgrade request, the state is {self._state.value}")
        if not 400 <= status_code <= 599:
            raise LocalProtocolError(f"reject with a 4xx or 5xx status, not {status_code}")
        self._out.append(self._ws.reject(status_code, header_bytes(headers), body))
        self._end(Input.REJECT, ABNORMAL_CLOSURE, f"handshake rejected with {status_code}")

    def decide(self, decision: object, *, now: float) -> None:
        """Apply an upgrade hook's decision: `Accept`, `Reject` or `None` (accept).

        Made for hooks that decide while the connection goes on: a decision that comes
        after the connection ended (a handshake timeout) is ignored, and a decision that
        cannot be applied (not one of the three, or a subprotocol the client did not offer)
        is logged and answered with 500, so that a faulty hook never leaves a client waiting.

        After calling this method: write `data_to_send()` and take the events.
        """
        if self._state is State.CLOSED:
            return
        if decision is not None and not isinstance(decision, Accept | Reject):
            logger.error("upgrade decision %r is not Accept, Reject or None; rejecting with 500", decision)
            decision = Reject(status_code=500)
        try:
            if isinstance(decision, Reject):
                self.reject(decision.status_code, decision.body, headers=decision.headers)
            else:
                decision = decision or Accept()
                self.accept(now=now, subprotocol=decision.subprotocol, headers=decision.headers)
        except LocalProtocolError:
            if self._state is not State.UPGRADE_REQUESTED:
                raise  # decided twice: the caller's bug
            logger.exception("cannot apply the upgrade decision %r; rejecting with 500", decision)
            self.reject(500)

    def _handle_handshake(self, event: _frames.HandshakeEvent) -> None:
        if isinstance(event, _frames.UpgradeReceived):
            self.path, self.request_headers, self.host = event.path, event.headers, event.host
            self._set_state(Input.UPGRADE_RECEIVED)
            self._reader.hold(self._ws.take_leftover())
            self._events.append(
                UpgradeRequested(
                    path=event.path, headers=event.headers, host=event.host, subprotocols=event.subprotocols
                )
            )
        elif isinstance(event, _frames.HandshakeFailed):
            self._out.append(self._ws.take_handshake_response())
            self._end(Input.FAIL, ABNORMAL_CLOSURE, f"not a WebSocket upgrade: {event.reason}")
