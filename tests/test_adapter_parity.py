"""session_trio and session_asyncio offer the same names, with the same signatures.

docs/architecture.md promises that switching loops is changing an import. This pins the public surface
of both adapters against each other: what only one loop has is listed here, with the reason,
and anything else that differs fails. The behaviour behind the names is pinned by mirrored
tests in `tests/trio/` and `tests/asyncio/`.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import session_asyncio
import session_trio

#: Exports only one adapter has, because only its loop has the concept.
ONLY_TRIO = {
    "serve_listeners",  # serve on `trio.abc.Listener`s made by hand
}
ONLY_ASYNCIO = {
    "Server",  # what `serve()` returns, as `asyncio.start_server` returns `asyncio.Server`
}

#: Parameters of `serve` and `unix_serve` that only one adapter takes.
SERVE_ONLY_TRIO = {"task_status"}  # for `nursery.start(serve, ...)`
SERVE_ONLY_ASYNCIO = {"kwargs"}  # passed on to `loop.create_server` / `create_unix_server`
#: Annotations of the serving functions that follow each loop's own listening call.
SERVE_LOOP_TYPES = {
    "host",  # trio.open_tcp_listeners takes `bytes` too
    "return",  # trio: NoReturn (it serves until cancelled); asyncio: the `Server`
}

FUNCTIONS = ["connect", "unix_connect", "reconnecting", "keep_connected", "serve", "unix_serve"]
ALIASES = ["NotificationHandler", "OnSession", "RequestHandler", "UpgradeHook"]


def _same_text(text: str) -> str:
    """`text` with the adapter's package name erased, for comparing annotations."""
    return text.replace("session_trio", "ADAPTER").replace("session_asyncio", "ADAPTER")


def _signature(function: Callable[..., Any]) -> str:
    return _same_text(str(inspect.signature(function)))


def _params(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


def _described(parameter: inspect.Parameter, *, annotation: bool = True) -> tuple[Any, ...]:
    described = (parameter.name, parameter.kind, parameter.default)
    return (*described, _same_text(str(parameter.annotation))) if annotation else described


def _public_members(cls: type) -> dict[str, Any]:
    return {name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")}


def test_the_same_names_are_exported() -> None:
    trio_names, asyncio_names = set(session_trio.__all__), set(session_asyncio.__all__)
    assert trio_names - asyncio_names == ONLY_TRIO
    assert asyncio_names - trio_names == ONLY_ASYNCIO
    for module in (session_trio, session_asyncio):
        assert len(module.__all__) == len(set(module.__all__))
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)


def test_session_has_the_same_public_members() -> None:
    trio_members = _public_members(session_trio.Session)
    asyncio_members = _public_members(session_asyncio.Session)
    assert trio_members.keys() == asyncio_members.keys()
    for name, member in trio_members.items():
        other = asyncio_members[name]
        assert type(member) is type(other), name  # a property in one is a property in both
        if isinstance(member, property):
            assert member.fget is not None and other.fget is not None
            returns = inspect.signature(member.fget).return_annotation
            assert _same_text(returns) == _same_text(inspect.signature(other.fget).return_annotation), name
            assert member.__doc__ and other.__doc__, name
        else:
            assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(other), name
            assert _signature(member) == _signature(other), name
            overloads = [_signature(f) for f in typing.get_overloads(member)]
            assert overloads == [_signature(f) for f in typing.get_overloads(other)], name
            assert inspect.getdoc(member) and inspect.getdoc(other), name


def test_session_is_an_async_context_manager_in_both() -> None:
    for name in ("__aenter__", "__aexit__"):
        assert _signature(getattr(session_trio.Session, name)) == _signature(
            getattr(session_asyncio.Session, name)
        )


@pytest.mark.parametrize("name", ["connect", "unix_connect", "reconnecting", "keep_connected"])
def test_connecting_takes_the_same_parameters(name: str) -> None:
    trio_function, asyncio_function = getattr(session_trio, name), getattr(session_asyncio, name)
    trio_signature, asyncio_signature = inspect.signature(trio_function), inspect.signature(asyncio_function)
    assert [_described(p) for p in trio_signature.parameters.values()] == [
        _described(p) for p in asyncio_signature.parameters.values()
    ]
    assert _same_text(trio_signature.return_annotation) == _same_text(asyncio_signature.return_annotation)


@pytest.mark.parametrize("name", ["serve", "unix_serve"])
def test_serving_takes_the_same_parameters_but_for_the_loops_own(name: str) -> None:
    trio_params = _params(getattr(session_trio, name))
    asyncio_params = _params(getattr(session_asyncio, name))
    assert trio_params.keys() - asyncio_params.keys() == SERVE_ONLY_TRIO
    assert asyncio_params.keys() - trio_params.keys() == SERVE_ONLY_ASYNCIO
    shared = [key for key in trio_params if key in asyncio_params]
    assert shared == [key for key in asyncio_params if key in trio_params]  # the same order
    for key in shared:
        annotated = key not in SERVE_LOOP_TYPES
        assert _described(trio_params[key], annotation=annotated) == _described(
            asyncio_params[key], annotation=annotated
        ), key


@pytest.mark.parametrize("name", FUNCTIONS)
def test_functions_are_documented_alike(name: str) -> None:
    for module in (session_trio, session_asyncio):
        doc = inspect.getdoc(getattr(module, name))
        assert doc is not None and "Args:" in doc, (module.__name__, name)


@pytest.mark.parametrize("name", ALIASES)
def test_type_aliases_are_the_same(name: str) -> None:
    trio_alias, asyncio_alias = getattr(session_trio, name), getattr(session_asyncio, name)
    assert _same_text(repr(trio_alias)) == _same_text(repr(asyncio_alias))


def test_handlers_and_callbacks_may_return_anything() -> None:
    # The value a notification handler or `on_session` returns is ignored: both adapters
    # type it `object`, so that any coroutine function fits.
    for module in (session_trio, session_asyncio):
        for name in ("NotificationHandler", "OnSession"):
            assert typing.get_args(getattr(module, name))[-1] == Awaitable[object], (module, name)


def test_reconnecting_takes_the_options_of_connect_and_a_backoff() -> None:
    for module in (session_trio, session_asyncio):
        connect = [_described(p) for p in _params(module.connect).values()]
        assert [_described(p) for p in _params(module.reconnecting).values()] == [
            *connect,
            ("backoff", inspect.Parameter.KEYWORD_ONLY, None, "Backoff | None"),
        ]
        assert [_described(p) for p in _params(module.keep_connected).values()][1:] == [
            _described(p) for p in _params(module.reconnecting).values()
        ]


def test_the_hub_is_one_for_both_adapters() -> None:
    # `open_hub` runs on anyio under either loop: both adapters export the same function.
    assert session_trio.open_hub is session_asyncio.open_hub


@pytest.mark.parametrize("module", [session_trio, session_asyncio])
def test_serving_takes_a_hub_and_reuse_port(module: Any) -> None:
    assert {"hub", "reuse_port"} <= _params(module.serve).keys()
    assert "hub" in _params(module.unix_serve)
    for name in ("id", "hub", "join", "leave"):
        assert name in _public_members(module.Session), name


def test_the_hub_loads_only_when_used() -> None:
    # `open_hub` is the same in both adapters, and importing an adapter does not load the
    # hub (nor anyio or coredis under it): most programs never open one.
    code = (
        "import sys, session_asyncio, session_trio\n"
        "print(sorted(m for m in ('session_hub', 'anyio', 'coredis') if m in sys.modules))\n"
        "import session_hub\n"
        "assert session_asyncio.open_hub is session_trio.open_hub is session_hub.open_hub\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
