"""The four wire messages of `docs/protocol.md`: parsing received text, writing sent text.

Sent text is compact JSON with `type` first and then the fields in session-rs's order, so
that it is byte-identical to what session-rs writes. orjson keeps a dict's insertion order.
"""

from __future__ import annotations

import enum
from typing import Any

from . import _json
from ._errors import PROTOCOL_ERROR_CODES, ErrorCode

#: Request ids are unsigned 32-bit integers (`docs/protocol.md`, "Request ids").
MAX_ID = 0xFFFF_FFFF
#: The reserved notification that cancels a request (`docs/protocol.md`, "Extensions").
CANCEL_METHOD = "$/cancel"


class Kind(enum.Enum):
    """The `type` of a message."""

    REQUEST = "request"
    RESPONSE = "response"
    ERROR_RESPONSE = "errorresponse"
    NOTIFICATION = "notification"


_KINDS = {kind.value: kind for kind in Kind}


class InvalidMessage(Exception):
    """A received message breaks `docs/protocol.md`; `args[0]` says how."""


def parse(text: str) -> tuple[Kind, int, str, Any]:
    """Read one received text message as `(kind, id, method, payload)`.

    `id` is 0 for a notification and `method` is `""` for answers; `payload` is `data`,
    `result` or `error`, `None` when absent.

    Raises:
        InvalidMessage: the text is not JSON, not an object, or breaks the message rules.
    """
    try:
        message = _json.loads(text)
    except _json.JSONDecodeError as exc:
        raise InvalidMessage(f"not valid JSON: {exc}") from None
    if type(message) is not dict:
        raise InvalidMessage("not a JSON object")
    kind_name = message.get("type")
    kind = _KINDS.get(kind_name) if type(kind_name) is str else None
    if kind is None:
        raise InvalidMessage("missing or unknown type")  # the value is the peer's: not logged
    if kind is Kind.NOTIFICATION:
        return kind, 0, _method_of(message), message.get("data")
    request_id = message.get("id")
    # bool is a subclass of int: `type(...) is int` keeps `true` out.
    if type(request_id) is not int or not 0 <= request_id <= MAX_ID:
        raise InvalidMessage(f"{kind.value} id missing or not an integer in 0..{MAX_ID}")
    if kind is Kind.REQUEST:
        return kind, request_id, _method_of(message), message.get("data")
    if kind is Kind.RESPONSE:
        return kind, request_id, "", message.get("result")
    return kind, request_id, "", message.get("error")


def _method_of(message: dict[str, Any]) -> str:
    method = message.get("method")
    if type(method) is not str:
        raise InvalidMessage("method missing or not a string")
    return method


def request(request_id: int, method: str, data: Any) -> bytes:
    """The text of a request, UTF-8 encoded."""
    return _json.dumps({"type": "request", "id": request_id, "method": method, "data": data})


def response(request_id: int, result: Any) -> bytes:
    """The text of a response, UTF-8 encoded."""
    return _json.dumps({"type": "response", "id": request_id, "result": result})


def error_response(request_id: int, error: Any) -> bytes:
    """The text of an error response, UTF-8 encoded."""
    return _json.dumps({"type": "errorresponse", "id": request_id, "error": error})


def notification(method: str, data: Any) -> bytes:
    """The text of a notification, UTF-8 encoded."""
    return _json.dumps({"type": "notification", "method": method, "data": data})


def protocol_error(request_id: int, code: int, message: str) -> bytes:
    """The text of an error response holding a protocol error object, UTF-8 encoded."""
    return error_response(request_id, {"code": int(code), "message": message})


def is_protocol_error(value: Any) -> bool:
    """Whether an error response's `error` is a protocol error object."""
    return (
        type(value) is dict
        and type(value.get("code")) is int
        and value["code"] in PROTOCOL_ERROR_CODES
        and type(value.get("message")) is str
    )


def is_cancelled_answer(value: Any) -> bool:
    """Whether an error response's `error` says the request was cancelled (-32800)."""
    return is_protocol_error(value) and value["code"] == ErrorCode.REQUEST_CANCELLED
