"""The implementations the benchmark runs, each as a server and a client of itself.

A `Variant` names a peer module (`benchmarks.e2e.impls.*`), the event loop it runs on and
the JSON codec it uses. Peer modules are imported only in the worker processes, so a
missing or broken library makes its own rows unavailable and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from ..builds import PURE_ENV, compiled_build
from .common import Codec

Loop = Literal["asyncio", "uvloop", "trio"]
Requester = Callable[[Any], Awaitable[Any]]
"`await request(data)` sends one echo request and returns its answer's result."


class PeerModule(Protocol):
    """What each `benchmarks.e2e.impls` module provides (for asyncio, uvloop or trio)."""

    def serve(self, codec: Codec) -> AbstractAsyncContextManager[int]:
        """Serve the echo method on 127.0.0.1, a free port; yields the port."""
        ...

    def connect(self, port: int, codec: Codec) -> AbstractAsyncContextManager[Requester]:
        """Open one client connection; yields its request function."""
        ...


@dataclass(frozen=True)
class Variant:
    """One row of the results: a library, on an event loop, with a codec."""

    library: str
    loop: Loop
    codec: str
    module: str
    "The peer module, `benchmarks.e2e.impls.<module>`."
    packages: tuple[str, ...]
    "Distributions whose versions the report lists for it."
    ours: bool = False
    "True for session-py's own adapters."
    build: str = ""
    "`pure`: session-py's pure-Python build forced (`SESSION_PY_NO_EXTENSIONS=1`); else as installed."

    @property
    def name(self) -> str:
        """`library[+json][+pure]@loop`, unique."""
        suffix = "" if self.codec == "orjson" else f"+{self.codec}"
        if self.build:
            suffix += f"+{self.build}"
        return f"{self.library}{suffix}@{self.loop}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables its processes run with."""
        return {PURE_ENV: "1"} if self.build == "pure" else {}

    @property
    def module_path(self) -> str:
        """The importable name of its peer module."""
        return f"benchmarks.e2e.impls.{self.module}"

    def to_json(self) -> dict[str, Any]:
        """For the worker's command line."""
        return {
            "library": self.library,
            "loop": self.loop,
            "codec": self.codec,
            "module": self.module,
            "packages": list(self.packages),
            "ours": self.ours,
            "build": self.build,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Variant:
        """The inverse of `to_json`."""
        loop = data["loop"]
        if loop not in ("asyncio", "uvloop", "trio"):
            raise ValueError(f"unknown loop {loop!r}")
        return cls(
            library=str(data["library"]),
            loop=loop,
            codec=str(data["codec"]),
            module=str(data["module"]),
            packages=tuple(str(p) for p in data["packages"]),
            ours=bool(data.get("ours", False)),
            build=str(data.get("build", "")),
        )


_CORE = ("wsproto", "h11", "orjson", "attrs", "cattrs", "websockets")


def _both_loops(library: str, module: str, packages: tuple[str, ...], codec: str = "orjson") -> list[Variant]:
    return [
        Variant(library, "asyncio", codec, module, packages),
        Variant(library, "uvloop", codec, module, (*packages, "uvloop")),
    ]


def _all_variants() -> tuple[Variant, ...]:
    variants = [
        Variant("session_asyncio", "asyncio", "orjson", "session_asyncio_peer", _CORE, ours=True),
        Variant("session_asyncio", "uvloop", "orjson", "session_asyncio_peer", (*_CORE, "uvloop"), ours=True),
        Variant("session_trio", "trio", "orjson", "session_trio_peer", (*_CORE, "trio"), ours=True),
        # The same with the pure-Python build forced: selected when a compiled build is
        # present (else the rows above are the pure build already), or when named.
        Variant(
            "session_asyncio", "asyncio", "orjson", "session_asyncio_peer", _CORE, ours=True, build="pure"
        ),
        Variant(
            "session_asyncio",
            "uvloop",
            "orjson",
            "session_asyncio_peer",
            (*_CORE, "uvloop"),
            ours=True,
            build="pure",
        ),
        Variant(
            "session_trio", "trio", "orjson", "session_trio_peer", (*_CORE, "trio"), ours=True, build="pure"
        ),
        *_both_loops("websockets", "websockets_peer", ("websockets", "orjson")),
        *_both_loops("websockets", "websockets_peer", ("websockets",), codec="json"),
        *_both_loops("aiohttp", "aiohttp_peer", ("aiohttp", "orjson")),
        *_both_loops("picows", "picows_peer", ("picows", "orjson")),
        Variant(
            "trio-websocket", "trio", "orjson", "trio_websocket_peer", ("trio-websocket", "trio", "orjson")
        ),
        *_both_loops("wsproto", "wsproto_asyncio_peer", ("wsproto", "h11", "orjson")),
        Variant("wsproto", "trio", "orjson", "wsproto_trio_peer", ("wsproto", "h11", "trio", "orjson")),
        *_both_loops("floor", "floor_peer", ("orjson",)),
        *_both_loops("floor", "floor_peer", (), codec="json"),
    ]
    return tuple(variants)


VARIANTS: Final[tuple[Variant, ...]] = _all_variants()
VARIANTS_BY_NAME: Final = {variant.name: variant for variant in VARIANTS}
LIBRARIES: Final = tuple(dict.fromkeys(variant.library for variant in VARIANTS))

DESCRIPTIONS: Final[dict[str, str]] = {
    "session_asyncio": "session-py: `session_asyncio.serve`/`connect`, `Method` echo",
    "session_trio": "session-py: `session_trio.serve`/`connect`, `Method` echo",
    "websockets": "`websockets.asyncio` server/client + hand-written id matching",
    "aiohttp": "aiohttp `WebSocketResponse` / `ws_connect` + hand-written id matching",
    "picows": "picows listeners (callbacks) + hand-written id matching",
    "trio-websocket": "trio-websocket `serve_websocket` / `open_websocket_url` + id matching",
    "wsproto": "wsproto driven by hand (asyncio Protocol, or trio streams) + id matching",
    "floor": "no WebSocket: asyncio Protocol, 4-byte length prefix + the same JSON",
}


def select(
    names: Sequence[str] = (),
    loops: Sequence[str] = (),
    codecs: Sequence[str] = (),
    *,
    pure_twins: bool | None = None,
) -> list[Variant]:
    """The variants matching every filter given (a name matches a library or a full name).

    The `+pure` variants come with their library when `pure_twins` (by default: when a
    compiled build is present), and whenever named in full.

    Raises:
        ValueError: a name matches nothing.
    """
    if pure_twins is None:
        pure_twins = compiled_build()
    chosen = [v for v in VARIANTS if pure_twins or not v.build or v.name in names]
    if names:
        unknown = [n for n in names if n not in LIBRARIES and n not in VARIANTS_BY_NAME]
        if unknown:
            raise ValueError(
                f"unknown implementation(s): {', '.join(unknown)}; known: {', '.join(LIBRARIES)}"
            )
        chosen = [v for v in chosen if v.library in names or v.name in names]
    if loops:
        chosen = [v for v in chosen if v.loop in loops]
    if codecs:
        chosen = [v for v in chosen if v.codec in codecs]
    return chosen
