"""`ClientConnection`: the client's end, which opens the handshake and reads its answer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import _frames
from ._config import ABNORMAL_CLOSURE, Config, Role, header_bytes
from ._connection import Connection
from ._errors import LocalProtocolError
from ._events import HandshakeAccepted, Headers, UpgradeRejected
from ._methods import Method
from ._state import Input


class ClientConnection(Connection):
    """The client's end of a session, without I/O.

    It starts its handshake at once: the upgrade request is in `data_to_send()`. Then
    `HandshakeAccepted` (the session is open) or `UpgradeRejected` (it is not) follows.

    Args:
        host: the `Host` header, `host:port` as dialled (session-rs sends it so).
        target: the path and query to request.
        now: the current time.
        headers: extra headers for the upgrade request (an `Origin`, credentials).
        subprotocols: subprotocols to offer, in order of preference.
        config: limits and timeouts (`Config()` when `None`).
        methods: the methods served, typed (`None`: untyped); see `Connection`.
        wait_for_start: hold the peer's messages until `start()`.

    Raises:
        LocalProtocolError: a header name or value cannot be sent.
    """

    __slots__ = ("_rejection",)

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        now: float,
        headers: Iterable[tuple[bytes | str, bytes | str]] = (),
        subprotocols: Iterable[str] = (),
        config: Config | None = None,
        methods: Iterable[Method[Any, Any, Any]] | None = None,
        wait_for_start: bool = False,
    ) -> None:
        super().__init__(Role.CLIENT, now=now, config=config, methods=methods, wait_for_start=wait_for_start)
        # A refusal's status, headers and the body so far, until the body is complete.
        self._rejection: tuple[int, Headers, bytearray] | None = None
        extra = header_bytes(headers)
        self.path, self.host, self.request_headers = target, host, extra
        try:
            self._out.append(self._ws.start_client(host, target, extra, tuple(subprotocols)))
        except Exception as exc:  # h11 refuses a header name or value it cannot send
            raise LocalProtocolError(f"invalid upgrade request: {exc}") from None

    def _handle_handshake(self, event: _frames.HandshakeEvent) -> None:
        if isinstance(event, _frames.UpgradeAccepted):
            self._handle_accepted(event.subprotocol, event.headers)
        elif isinstance(event, _frames.UpgradeRefused):
            self._rejection = (event.status_code, event.headers, bytearray())
            if not event.has_body:
                self._handle_refusal_body(b"", True)
        elif isinstance(event, _frames.RefusalBodyReceived):
            self._handle_refusal_body(event.data, event.finished)
        elif isinstance(event, _frames.HandshakeFailed):
            self._end(Input.FAIL, ABNORMAL_CLOSURE, f"invalid handshake response: {event.reason}")

    def _handle_accepted(self, subprotocol: str | None, headers: Headers) -> None:
        self.subprotocol, self.response_headers = subprotocol, headers
        self._set_state(Input.ACCEPTED)
        self._opened(self._now)
        self._events.append(HandshakeAccepted(subprotocol=subprotocol, headers=headers))

    def _handle_refusal_body(self, data: bytes, finished: bool) -> None:
        assert self._rejection is not None
        status, headers, body = self._rejection
        body += data[: self.config.max_rejection_body - len(body)]
        if finished:
            self._events.append(UpgradeRejected(status_code=status, headers=headers, body=bytes(body)))
            self._end(Input.REJECTED, ABNORMAL_CLOSURE, f"handshake rejected with {status}")
