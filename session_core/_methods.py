"""Typed methods: a name with request, response and error types, and their conversion.

A type is an attrs class, a JSON primitive (`int`, `float`, `str`, `bool`, `None`), `Any`
(any JSON value, passed through), or lists, dicts, optionals and unions of these. cattrs
converts between them and JSON values; `make_converter()` builds converters strict
where cattrs is lenient by default (it would turn `"5"` into `5` and `"abc"` into
`["a", "b", "c"]`).

There is no global converter to register hooks on: a `Method` looks its hooks up once, when
it is built, so a hook registered on a shared converter afterwards would be silently
ignored by the methods built before. A user with custom types makes a converter, registers
the hooks on it, and passes it to the methods that need it (`Method(..., converter=c)`).
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

import cattrs

from ._errors import EncodingError, LocalProtocolError

Req = TypeVar("Req")
# Covariant: a `Method[X, int, str]` is usable where the response may be any `object`.
Resp = TypeVar("Resp", covariant=True)  # noqa: PLC0105 - named as in the docs
Err = TypeVar("Err", covariant=True)  # noqa: PLC0105
T = TypeVar("T")

#: Reads a JSON value as a type; raises on a value that does not fit.
Structure = Callable[[Any], Any]
#: Turns a typed value into a JSON value.
Unstructure = Callable[[Any], Any]


def _exact(expected: type) -> Structure:
    def structure(value: Any) -> Any:
        if type(value) is not expected:
            raise TypeError(f"expected {expected.__name__}, got {type(value).__name__}")
        return value

    return structure


def _as_hook(structure: Structure) -> Callable[[Any, Any], Any]:
    return lambda value, _: structure(value)


def _float(value: Any, _: Any) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _container_origin(cls: Any) -> type | None:
    origin = cls if cls in (list, dict) else typing.get_origin(cls)
    if origin in (list, collections.abc.Sequence, collections.abc.MutableSequence):
        return list
    if origin in (dict, collections.abc.Mapping, collections.abc.MutableMapping):
        return dict
    return None


def _strict_container(converter: cattrs.BaseConverter, cls: Any) -> Callable[[Any, Any], Any]:
    # cattrs accepts any iterable for a list and any mapping for a dict; JSON gives exactly
    # list and dict, and anything else (a string, say) does not fit.
    expected = _container_origin(cls)
    args = typing.get_args(cls)
    if expected is list:
        item = converter.get_structure_hook(args[0] if args else Any)
        item_type = args[0] if args else Any

        def structure_list(value: Any, _: Any) -> Any:
            if type(value) is not list:
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return [item(v, item_type) for v in value]

        return structure_list
    value_type = args[1] if len(args) == 2 else Any
    item = converter.get_structure_hook(value_type)

    def structure_dict(value: Any, _: Any) -> Any:
        if type(value) is not dict:
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return {k: item(v, value_type) for k, v in value.items()}

    return structure_dict


def _is_union(cls: Any) -> bool:
    return typing.get_origin(cls) in (typing.Union, types.UnionType)


def _union(converter: cattrs.BaseConverter, cls: Any) -> Callable[[Any, Any], Any]:
    # cattrs handles only some unions (optionals, attrs classes told apart by their fields);
    # JSON needs them all: `None` goes to `None`, anything else to the first member that
    # takes it, in the order written.
    members = [m for m in typing.get_args(cls) if m is not type(None)]
    nullable = len(members) < len(typing.get_args(cls))
    hooks = [(converter.get_structure_hook(m), m) for m in members]

    def structure_union(value: Any, _: Any) -> Any:
        if value is None and nullable:
            return None
        for hook, member in hooks:
            try:
                return hook(value, member)
            except Exception:  # the next member may take it
                continue
        raise TypeError(f"no member of {cls} takes a {type(value).__name__}")

    return structure_union


def _has_container_origin(cls: Any) -> bool:
    return _container_origin(cls) is not None


def make_converter() -> cattrs.Converter:
    """A new cattrs converter, strict as JSON is: the one every `Method` uses by default.

    A JSON value converts only to a type that it is: `"5"` is not an `int`, `"abc"` not
    a `list[str]`, `1` not a `bool`; an `int` is taken for a `float`. Unions take `None`
    for `None` and anything else for their first member that takes it, in order.

    Register hooks for your own types on the converter this returns, then pass it to the
    methods that need it (`Method(..., converter=...)`); register them before building
    the methods, which look their hooks up once, when built.
    """
    converter = cattrs.Converter()
    for tp in (int, str, bool):
        converter.register_structure_hook(tp, _as_hook(_exact(tp)))
    converter.register_structure_hook(float, _float)
    converter.register_structure_hook_factory(
        _has_container_origin, lambda cls: _strict_container(converter, cls)
    )
    converter.register_structure_hook_factory(_is_union, lambda cls: _union(converter, cls))
    return converter


_DEFAULT_CONVERTER = make_converter()


def _identity(value: Any) -> Any:
    return value


def _none(value: Any) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__}")


_PLAIN = (int, str, bool, float)


def structure_for(tp: Any, converter: cattrs.BaseConverter = _DEFAULT_CONVERTER) -> Structure:
    """A function that reads a JSON value as `tp` (raising when it does not fit)."""
    if tp is Any or tp is object:
        return _identity
    if tp is None or tp is type(None):
        return _none
    try:
        hook = converter.get_structure_hook(tp)
    except cattrs.errors.StructureHandlerNotFoundError:
        raise LocalProtocolError(f"unsupported type for a method: {tp!r}") from None
    if tp in (int, str, bool):
        return _exact(tp)  # the same check as the hook, one call cheaper
    return lambda value: hook(value, tp)


def unstructure_for(tp: Any, converter: cattrs.BaseConverter = _DEFAULT_CONVERTER) -> Unstructure:
    """A function that turns a value of `tp` into a JSON value.

    A JSON primitive is checked on the way out too, so that a handler returning the wrong
    type is caught on its own side (-32603) instead of confusing the peer.
    """
    if tp in _PLAIN or tp is None or tp is type(None):
        return structure_for(tp, converter)
    if tp is Any or tp is object:
        # Any JSON value goes to the codec as it is: `_json` turns the attrs instances it
        # may hold into JSON itself, without cattrs copying every list and dict first.
        return _identity
    return converter.get_unstructure_hook(tp)


def _type_name(tp: Any) -> str:
    if tp is None:
        return "None"
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return repr(tp).replace("typing.", "")


class Method(Generic[Req, Resp, Err]):
    """A method of the protocol: a name and its request, response and error types.

    The Python counterpart of session-rs's `Method` trait (`NAME`, `Request`, `Response`,
    `Error`)::

        add = Method("add", request=AddArgs, response=int, error=str)

    A type checker infers `Method[AddArgs, int, str]`, and from it the type that
    `session.request(add, ...)` returns. `None` stands for "no value" (`null` on the wire),
    `Any` for any JSON value. The same object serves notifications: their `data` has the
    request type. Names starting with `$/` are reserved for the protocol.

    Values convert with `converter`, a cattrs converter (by default one made by
    `make_converter()`, shared by every method built without one). For types of your own
    that need hooks, make a converter with `make_converter()`, register the hooks, and pass
    it here.
    """

    __slots__ = (
        "error",
        "name",
        "request",
        "response",
        "structure_error",
        "structure_request",
        "structure_response",
        "unstructure_error",
        "unstructure_request",
        "unstructure_response",
    )

    # One overload per place where `None` stands for "no value": a type checker does not
    # read the value `None` as the type `None` on its own.
    @overload
    def __init__(
        self: Method[T, Resp, Err],
        name: str,
        *,
        request: type[T],
        response: type[Resp],
        error: type[Err],
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[T, None, Err],
        name: str,
        *,
        request: type[T],
        response: None,
        error: type[Err],
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[T, Resp, None],
        name: str,
        *,
        request: type[T],
        response: type[Resp],
        error: None,
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[T, None, None],
        name: str,
        *,
        request: type[T],
        response: None,
        error: None,
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[None, Resp, Err],
        name: str,
        *,
        request: None,
        response: type[Resp],
        error: type[Err],
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[None, Resp, None],
        name: str,
        *,
        request: None,
        response: type[Resp],
        error: None,
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[None, None, None],
        name: str,
        *,
        request: None,
        response: None,
        error: None,
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self: Method[Any, Any, Any],
        name: str,
        *,
        request: Any,
        response: Any,
        error: Any,
        converter: cattrs.BaseConverter | None = None,
    ) -> None: ...
    def __init__(
        self,
        name: str,
        *,
        request: Any,
        response: Any,
        error: Any,
        converter: cattrs.BaseConverter | None = None,
    ) -> None:
        if not isinstance(name, str):
            raise LocalProtocolError(f"a method name is a string, not {name!r}")
        self.name = name
        "The `method` field on the wire."
        self.request = request
        "The type of a request's (or notification's) `data`."
        self.response = response
        "The type of a response's `result`."
        self.error = error
        "The type of an error response's `error`."
        # The hooks are looked up once, here: converting is then one call, no lookup.
        conv = _DEFAULT_CONVERTER if converter is None else converter
        self.structure_request: Structure = structure_for(request, conv)
        self.structure_response: Structure = structure_for(response, conv)
        self.structure_error: Structure = structure_for(error, conv)
        self.unstructure_request: Unstructure = unstructure_for(request, conv)
        self.unstructure_response: Unstructure = unstructure_for(response, conv)
        self.unstructure_error: Unstructure = unstructure_for(error, conv)

    def __repr__(self) -> str:
        types = ", ".join(_type_name(t) for t in (self.request, self.response, self.error))
        return f"Method({self.name!r}, {types})"


def describe_error(exc: BaseException, tp: Any) -> str:
    """A short account of why a value did not fit `tp`, which never quotes the value.

    The value is the peer's: what it holds must not reach logs (an attrs validator's or an
    Enum's message quotes it), so only the place and the expected type are told.
    """
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_without_value))[:300]
    return _without_value(exc, tp)


def _without_value(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    return "invalid value" if tp is None else f"expected {_type_name(tp)}"


def not_sendable(exc: Exception) -> EncodingError:
    """The error for a value that its type's unstructure hook refused."""
    return EncodingError(f"value does not fit its type: {exc}")
