"""The repository stands on its own: it cites no document outside it, and its documents
name no path of the machine they were written on.

The protocol and the architecture are written down inside the repository
(`docs/protocol.md`, `docs/architecture.md`); a reference to a file that is not in it
leaves a reader with nothing to open. Generated results (`benchmarks/RESULTS.md`) once
carried a build machine's absolute paths; these checks keep both out for good.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Directories never read: tools' caches, environments, build output, installed packages.
SKIPPED_DIRS = frozenset({"node_modules", "_build", "__pycache__", "build", "dist"})
#: The files that may cite another document: code, documents, the interop peers' pages.
SOURCE_SUFFIXES = frozenset({".py", ".md", ".rst", ".html", ".mjs"})
#: The documents, which must not name a machine's paths.
DOC_SUFFIXES = frozenset({".md", ".rst", ".html", ".txt"})

#: Documents that live outside the repository. Spelled in pieces, so that this file does
#: not cite them itself.
PROTOCOL_MD, DESIGN_MD, HOUSE_STYLE = "PROTOCOL" + ".md", "DESIGN" + ".md", "HOUSE" + "-STYLE"
OUTSIDE_DOCS = re.compile("|".join(re.escape(name) for name in (PROTOCOL_MD, DESIGN_MD, HOUSE_STYLE)))
#: An absolute path into a home or build directory (`/home/alice/...`, `/work/main/...`).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home)/")


def repository_files(root: Path, suffixes: frozenset[str]) -> Iterator[Path]:
    """Every file under `root` with one of `suffixes`, outside hidden and generated
    directories (`.git`, `.venv`, caches, `node_modules`, build output)."""
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            path = Path(directory, name)
            if path.suffix in suffixes:
                yield path


def matches(root: Path, suffixes: frozenset[str], pattern: re.Pattern[str]) -> list[str]:
    """`path:line: text` for every line of those files that `pattern` matches."""
    found = []
    for path in repository_files(root, suffixes):
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(root).as_posix()}:{number}: {line.strip()}")
    return found


def test_no_reference_to_documents_outside_the_repository() -> None:
    """Code and documents cite `docs/protocol.md` and `docs/architecture.md`, which are in
    the repository, never the documents they were first written from."""
    found = matches(ROOT, SOURCE_SUFFIXES, OUTSIDE_DOCS)
    assert not found, "cite docs/protocol.md or docs/architecture.md instead:\n" + "\n".join(found)


def test_no_machine_paths_in_documents() -> None:
    """No document (results tables included) names an absolute path of the machine that
    wrote it: paths are relative to the repository's root."""
    found = matches(ROOT, DOC_SUFFIXES, MACHINE_PATH)
    assert not found, "make these paths relative to the repository:\n" + "\n".join(found)


def test_the_protocol_and_architecture_pages_are_in_the_docs() -> None:
    """The pages that replace the outside documents exist, with the section titles that
    code comments cite, and the documentation's table of contents lists them."""
    protocol = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    titles = set(re.findall(r"^#+ (.+)$", protocol, re.MULTILINE))
    cited = {
        "Transport",
        "Messages",
        "Request ids",
        "Answering",
        "Liveness and closing",
        "Extensions",
        "A captured session-rs exchange",
        "How session-rs 0.1.3 behaves on the wire",
    }
    assert cited <= titles, cited - titles
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "## The pump contract" in architecture
    toctree = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    assert re.search(r"^   protocol$", toctree, re.MULTILINE)
    assert re.search(r"^   architecture$", toctree, re.MULTILINE)


def test_profiles_name_files_relative_to_the_repository() -> None:
    """The benchmark tools that write profile tables into committed results name the
    project's files from the repository's root, wherever it is checked out."""
    from benchmarks.core_bench import _label  # noqa: PLC0415 - benchmark code, loaded on use
    from benchmarks.e2e.profile import display_path  # noqa: PLC0415

    assert display_path(str(ROOT / "session_asyncio" / "_session.py")) == "session_asyncio/_session.py"
    assert display_path("/opt/venv/lib/python3.11/site-packages/wsproto/frame_protocol.py") == (
        "wsproto/frame_protocol.py"
    )
    assert display_path("/usr/lib/python3.11/asyncio/events.py") == "asyncio/events.py"
    assert display_path("/home/alice/elsewhere/helper.py") == "helper.py"
    assert display_path("<built-in>") == "<built-in>"
    assert (
        _label((str(ROOT / "session_core" / "_ws.py"), 7, "send_text")) == "session_core/_ws.py:7(send_text)"
    )


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The scans above see a planted reference and a planted path, and skip hidden and
    generated directories."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        f"See {DESIGN_MD}.\nBuilt in /home/alice/src.\n", encoding="utf-8"
    )
    (tmp_path / "code.py").write_text(f"# as {PROTOCOL_MD} says\nx = '/work/main/a.py'\n", encoding="utf-8")
    (tmp_path / "peer.mjs").write_text(f"// {HOUSE_STYLE} section 5\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text(f"{PROTOCOL_MD}\n", encoding="utf-8")  # not a source file
    for hidden in (".venv", "node_modules", "_build"):
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "skipped.md").write_text(f"{PROTOCOL_MD} /home/x/\n", encoding="utf-8")
    assert sorted(matches(tmp_path, SOURCE_SUFFIXES, OUTSIDE_DOCS)) == [
        f"code.py:1: # as {PROTOCOL_MD} says",
        f"docs/page.md:1: See {DESIGN_MD}.",
        f"peer.mjs:1: // {HOUSE_STYLE} section 5",
    ]
    # Only documents are checked for machine paths; code may need a path in a test.
    assert matches(tmp_path, DOC_SUFFIXES, MACHINE_PATH) == ["docs/page.md:2: Built in /home/alice/src."]
    # A path relative to the repository, or a URL's path, is not a machine's path.
    assert not MACHINE_PATH.search("session_core/_ws.py, ~/work/x, https://example.com/home/")
