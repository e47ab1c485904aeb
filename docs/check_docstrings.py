"""List the public names of the project's packages (`PACKAGES`) without a docstring.

    python docs/check_docstrings.py          # exit status 1 when something is missing

Public: every name in a package's `__all__`; for a class, the methods, properties and
attrs fields of its own that do not start with `_`. A field or a constant is documented by
an attribute docstring (a string right after it, or a `#:` comment before it), as Sphinx
reads them. Enum members and `__init__` are not required to have one.

The docstrings are read from the source: the compiled build of `session_core` (mypyc) keeps
none at run time, so this check (like the API reference, `docs/conf.py`) imports the pure
modules (`SESSION_PY_NO_EXTENSIONS=1`) whichever build is installed.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from sphinx.pycode import ModuleAnalyzer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The source's docstrings, not the compiled build's (which has none): see the module's docs.
os.environ["SESSION_PY_NO_EXTENSIONS"] = "1"

#: The top-level packages whose classes' members are checked, inherited ones included.
ROOTS = ("session_core", "session_trio", "session_asyncio", "session_cli", "session_hub")

PACKAGES = (
    "session_core",
    "session_core.driver",
    "session_trio",
    "session_asyncio",
    "session_cli",
    "session_hub",
)


def attribute_docs(module: str) -> dict[tuple[str, str], list[str]]:
    """The attribute docstrings of a module, keyed by (class qualname or "", name)."""
    return {key: list(value) for key, value in ModuleAnalyzer.for_module(module).find_attr_docs().items()}


def documented_data(package: Any, name: str, value: Any) -> bool:
    """Whether a private module (of `package`, or of the core, which the adapters re-export
    from) that holds the data `name` documents it."""
    core = importlib.import_module("session_core")
    names = [info.name for info in pkgutil.walk_packages(core.__path__, "session_core.")]
    if hasattr(package, "__path__"):
        names += [info.name for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]
    else:  # a module such as `session_core.driver`: it documents its own data
        names.append(package.__name__)
    for module_name in names:
        module = importlib.import_module(module_name)
        if getattr(module, name, None) is value and ("", name) in attribute_docs(module_name):
            return True
    return False


def missing_in_class(cls: type, public: str) -> Iterator[str]:
    """The members of `cls` (shown as `public`) that lack a docstring."""
    docs = attribute_docs(cls.__module__)
    if issubclass(cls, enum.Enum):
        return
    fields = {field.name for field in attrs.fields(cls)} if attrs.has(cls) else set()
    for name in fields:
        if not name.startswith("_") and (cls.__qualname__, name) not in docs:
            yield f"{public}.{name} (field)"
    # Members a class gets from the project's own bases count too (the driver's mixins).
    own = [c for c in cls.__mro__ if c.__module__.split(".")[0] in ROOTS]
    members = {name: member for c in reversed(own) for name, member in vars(c).items()}
    for name, member in members.items():
        if name.startswith("_") or name in fields:
            continue
        target = member.fget if isinstance(member, property) else member
        if isinstance(target, classmethod | staticmethod):
            target = target.__func__
        if inspect.isfunction(target) and not inspect.getdoc(target):
            yield f"{public}.{name}"


def missing() -> Iterator[str]:
    """Every public name without a docstring, as `package.Name[.member]`."""
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for name in package.__all__:
            value = getattr(package, name)
            public = f"{package_name}.{name}"
            if inspect.isclass(value):
                if not value.__dict__.get("__doc__"):
                    yield public
                yield from missing_in_class(value, public)
            elif inspect.isfunction(value) or inspect.isroutine(value):
                if not inspect.getdoc(value):
                    yield public
            elif not documented_data(package, name, value):
                yield f"{public} (data)"


def main() -> int:
    """Print what is missing; 1 if anything is."""
    if importlib.import_module("session_core").COMPILED:  # imported before the switch was set
        print("session_core was imported compiled: its docstrings cannot be checked", file=sys.stderr)
        return 1
    found = sorted(set(missing()))
    for name in found:
        print(name)
    print(f"{len(found)} public names without a docstring", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
