"""What a driver gives back to a caller for each outcome of a request, and URL parsing.

Both adapters need exactly this; it lives here so that they stay I/O only.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

import attrs

from ._errors import InvalidResponse, LocalProtocolError, ProtocolErrorResponse, RemoteError, SessionClosed
from ._events import (
    ErrorResponseReceived,
    Event,
    InvalidMessageReceived,
    InvalidResponseReceived,
    RequestAborted,
    RequestRejected,
    RequestTimedOut,
    ResponseReceived,
    UnexpectedResponseReceived,
)

#: The events that end one of our requests.
OUTCOMES = (ResponseReceived, ErrorResponseReceived, InvalidResponseReceived, RequestTimedOut, RequestAborted)


def result_of(event: Event) -> Any:
    """The value a request returns for its outcome event, or the exception it raises.

    `ResponseReceived` gives its result; an error response raises `RemoteError` (or the
    `ProtocolErrorResponse` subclass of its code); an answer that does not fit raises
    `InvalidResponse`; a timeout raises `TimeoutError`; the end of the session raises
    `SessionClosed`.
    """
    if isinstance(event, ResponseReceived):
        return event.result
    if isinstance(event, ErrorResponseReceived):
        if event.code is not None and event.message is not None:
            raise ProtocolErrorResponse.from_code(
                event.code, event.message, method=event.method, request_id=event.request_id
            )
        raise RemoteError(event.error, method=event.method, request_id=event.request_id)
    if isinstance(event, InvalidResponseReceived):
        raise InvalidResponse(event.method, event.request_id, event.reason)
    if isinstance(event, RequestTimedOut):
        raise TimeoutError(f"request {event.request_id} ({event.method}) timed out")
    if isinstance(event, RequestAborted):
        raise SessionClosed(event.code, event.reason)
    raise TypeError(f"{event!r} is not the outcome of a request")


def log_event(logger: logging.Logger, event: Event) -> None:
    """Log what a driver has no other use for, never with the peer's payloads.

    An invalid message and an answer to an unknown id are warnings (the peer is at
    fault); a late answer to a request given up on and a request the connection rejected
    itself are routine, logged at debug. Other events are not logged.
    """
    if isinstance(event, InvalidMessageReceived):
        logger.warning("invalid message ignored: %s", event.reason)
    elif isinstance(event, UnexpectedResponseReceived):
        if event.late:
            logger.debug("late answer to request %d (%s) ignored", event.request_id, event.reason)
        else:
            logger.warning("answer to unknown request id %d ignored", event.request_id)
    elif isinstance(event, RequestRejected):
        logger.debug("request %d (%s) rejected: %s", event.request_id, event.method, event.message)


@attrs.frozen(kw_only=True)
class WebSocketURL:
    """A parsed `ws://` or `wss://` URL."""

    secure: bool
    "True for `wss://`."
    host: str
    "The host to dial (without brackets for IPv6)."
    port: int
    "The port to dial (80 or 443 when the URL has none)."
    target: str
    "The path and query to request."

    @property
    def host_header(self) -> str:
        """The `Host` header: `host:port`, as session-rs sends it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_url(url: str) -> WebSocketURL:
    """Split a `ws://` or `wss://` URL; raise `LocalProtocolError` for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise LocalProtocolError(f"not a ws:// or wss:// URL: {url!r}")
    if not parts.hostname:
        raise LocalProtocolError(f"no host in URL: {url!r}")
    if parts.username or parts.password:
        raise LocalProtocolError("credentials in the URL are not supported; pass headers")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        raise LocalProtocolError(f"invalid port in URL: {url!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebSocketURL(secure=parts.scheme == "wss", host=parts.hostname, port=port, target=target)
