"""Sphinx configuration: the API reference of session_core, session_trio and session_asyncio,
with the protocol and architecture pages (Markdown, read by myst-parser).

Build it, with every warning an error:

    python -m sphinx -W --keep-going -E -b html docs docs/_build/html

The reference is generated from the docstrings (Google style, read by napoleon). A check at
the end of the build warns, and so fails the build, when a name exported in the `__all__`
of one of the three packages is missing from the pages.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

# docutils ships no types (types-docutils has them).
from docutils import nodes  # type: ignore[import-untyped, unused-ignore]
from docutils.parsers.rst import directives  # type: ignore[import-untyped, unused-ignore]
from docutils.statemachine import StringList  # type: ignore[import-untyped, unused-ignore]
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.ext.napoleon.docstring import GoogleDocstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The reference is read from the source: the compiled build of session_core keeps no
# docstrings at run time, so autodoc imports the pure modules (see `session_core`).
os.environ["SESSION_PY_NO_EXTENSIONS"] = "1"

from session_cli import build_parser  # noqa: E402 - needs the path above

PACKAGES = ("session_core", "session_core.driver", "session_trio", "session_asyncio", "session_hub")

project = "session-py"
author = "the session-py authors"
copyright = "the session-py authors"
release = "0.1.0"

# myst_parser reads the Markdown pages (the protocol and the architecture), which stay plain
# Markdown so that they read well in the repository too.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "myst_parser"]
exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
# Headings get anchors, so that a page can link to a section (`protocol.md#answering`).
myst_heading_anchors = 3
html_theme = "alabaster"
html_static_path: list[str] = []

# `name` in the docstrings (Markdown-style code) links to the object when it exists and is
# shown as code otherwise. Unresolved links are not warnings unless nitpicky mode is on.
default_role = "py:obj"

# Google-style sections (Args, Returns, Raises...) are read by napoleon, through
# `google_docstrings` below rather than napoleon's own hook: napoleon would read an
# attribute docstring such as "Server: the upgrade request's headers." as the type
# "Server" (Google style's `type: text` form), and this project does not use that form.
napoleon_google_docstring = False
napoleon_numpy_docstring = False
napoleon_use_rtype = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

logger = logging.getLogger(__name__)


class CliHelp(SphinxDirective):
    """`.. cli-help:: [COMMAND]`: the `--help` text of the command line, as it is now."""

    optional_arguments = 1
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {"width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        os.environ["COLUMNS"] = str(self.options.get("width", 90))
        parser = build_parser()
        if self.arguments:
            actions = [a for a in parser._actions if a.dest == "command"]
            choices: Any = actions[0].choices
            parser = choices[self.arguments[0]]
        text = parser.format_help()
        return [nodes.literal_block(text, text, language="text")]


class ExportedData(SphinxDirective):
    """`.. exported-data:: package.NAME`: a constant or type alias that a package re-exports.

    autodoc looks for the attribute docstring (a string after the assignment, or a `#:`
    comment before it) in the package's `__init__.py` only; this directive finds it in the
    private module that defines the name.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package_name, _, name = self.arguments[0].rpartition(".")
        package = importlib.import_module(package_name)
        value = getattr(package, name)
        doc = _attribute_doc(package, name, value)
        lines = [f".. py:data:: {name}", f"   :module: {package_name}", f"   {_describe(value)}"]
        lines.append("")
        lines.extend(f"   {line}" for line in doc)
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), 0, node)
        return list(node.children)


def _attribute_doc(package: Any, name: str, value: Any) -> list[str]:
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        if getattr(module, name, None) is not value:
            continue
        docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
        if ("", name) in docs:
            return list(docs["", name])
    return []  # reported by docs/check_docstrings.py, not a build failure


# `collections.abc.`, `session_core._events.`...: module paths in a type alias's repr.
_QUALIFIERS = re.compile(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_])")


def _describe(value: Any) -> str:
    """The `:value:` or `:type:` option that shows `value` best."""
    if isinstance(value, str | int):
        return f":value: {value!r}"
    if isinstance(value, tuple) and all(isinstance(item, type) for item in value):
        return f":value: ({', '.join(item.__name__ for item in value)})"
    if hasattr(value, "__origin__") or isinstance(value, types.UnionType):  # a type alias
        return f":value: {_QUALIFIERS.sub('', repr(value))}"
    return f":type: {type(value).__module__.partition('.')[0]}.{type(value).__qualname__}"


def google_docstrings(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Read Google-style sections, except in the docstrings of attributes and data."""
    if what in ("attribute", "property", "data"):
        return
    lines[:] = GoogleDocstring(lines, app.config, app, cast(Any, what), name, obj, options).lines()


def check_exports(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn about every exported name that no page documents."""
    documented = set(env.get_domain("py").objects)  # type: ignore[attr-defined]
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            if f"{package}.{name}" not in documented:
                logger.warning("%s.%s is exported but not documented", package, name)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the `cli-help` directive and the export check."""
    app.add_directive("cli-help", CliHelp)
    app.add_directive("exported-data", ExportedData)
    app.connect("autodoc-process-docstring", google_docstrings)
    app.connect("env-check-consistency", check_exports)
    return {"parallel_read_safe": True}
