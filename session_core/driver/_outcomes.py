"""What a request's outcome event means to its caller, and what a driver only logs."""

from __future__ import annotations

import logging
from typing import Any

from .._errors import InvalidResponse, ProtocolErrorResponse, RemoteError, SessionClosed
from .._events import (
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

__all__ = ["OUTCOMES", "log_event", "result_of"]

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
