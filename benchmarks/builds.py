"""Which build of session-py a benchmark process runs, and how to force the pure one.

Shared by the core benchmark and the end-to-end harness, which both report both builds.
"""

from __future__ import annotations

#: Set to `1` in a process's environment: session-py's pure-Python build, even where the
#: compiled modules are installed (`session_core.COMPILED` false).
PURE_ENV = "SESSION_PY_NO_EXTENSIONS"


def compiled_build() -> bool:
    """Whether this process runs session-py's compiled build (`session_core.COMPILED`)."""
    import session_core  # noqa: PLC0415 - only when asked

    return bool(getattr(session_core, "COMPILED", False))


def current_build() -> str:
    """This process's build and masking, e.g. `compiled, C masking`."""
    from session_core import _mask  # noqa: PLC0415

    build = "compiled" if compiled_build() else "pure"
    return f"{build}, {'C' if _mask.ACCELERATED else 'Python'} masking"
