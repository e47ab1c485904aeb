"""The pure-Python build on demand (`SESSION_PY_NO_EXTENSIONS`, see `session_core`).

An import hook that loads `session_core`'s submodules from their `.py` files, ahead of the
compiled modules that may sit next to them. `session_core/__init__.py` installs it before
importing anything else of the package; this module is never compiled itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import SOURCE_SUFFIXES, FileFinder, ModuleSpec, SourceFileLoader
from types import ModuleType

_PREFIX = __name__.rpartition(".")[0] + "."


class PureFinder(MetaPathFinder):
    """Finds `session_core.*` modules as source files only (packages included)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The spec of `fullname`'s `.py` file, or `None` for any other module."""
        if not fullname.startswith(_PREFIX) or path is None:
            return None
        for entry in path:
            spec = FileFinder(entry, (SourceFileLoader, SOURCE_SUFFIXES)).find_spec(fullname, target)
            if spec is not None and spec.loader is not None:
                return spec
        return None


def install() -> None:
    """Put the finder first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, PureFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, PureFinder())
