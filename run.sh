#!/usr/bin/env bash
# One entry point for people and CI. Sets up .venv on first use (or when pyproject.toml
# changes), then:
#   bash run.sh demo     a real client and server exchanging messages over a socket
#   bash run.sh hub-demo two worker processes on one port with a Redis hub (or in-process)
#   bash run.sh test     the whole test suite (extra arguments go to pytest)
#   bash run.sh check    mypy --strict, ruff check, ruff format --check
#   bash run.sh docs     the API reference, warnings as errors (docs/_build/html)
#   bash run.sh bench    the core benchmark
#   bash run.sh e2e      the end-to-end benchmark matrix (about 15 minutes)
#   bash run.sh compile  build session_core's compiled modules in place (mypyc), next to the
#                        sources: the modules that pyproject.toml lists, as the wheels hold
#   bash run.sh pure     remove every compiled module again (back to pure Python)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    echo "setting up $VENV ..." >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[test,bench,docs]'
    touch "$VENV/.installed"
fi
PY="$VENV/bin/python"
remove_compiled() {  # every artefact of `compile` (and of the wheel hook's in-place build)
    find session_core \( -name '*.so' -o -name '*.pyd' \) -delete
    rm -f session_core__mypyc*.so session_core__mypyc*.pyd
}
case "${1:-}" in
    demo) shift; exec "$PY" examples/demo.py "$@" ;;
    hub-demo) shift; exec "$PY" examples/hub_demo.py "$@" ;;  # two workers, one Redis hub
    test) shift; exec "$PY" -bb -m pytest -q "$@" ;;
    check)
        "$VENV/bin/mypy"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        ;;
    docs) shift; exec "$PY" -m sphinx -W --keep-going -E -q -b html docs docs/_build/html "$@" ;;
    bench) shift; exec "$PY" -m benchmarks.core_bench "$@" ;;
    e2e) shift; exec "$PY" -m benchmarks.e2e "$@" ;;
    compile)
        # The modules, the mypy arguments and mypycify's options are the wheel hook's
        # ([tool.hatch.build.targets.wheel.hooks.mypyc] in pyproject.toml): one list for both
        # builds. setuptools runs in a scratch directory (it would read our pyproject.toml
        # otherwise) and writes the extensions next to the sources.
        remove_compiled
        "$PY" - <<'PYTHON'
import os, subprocess, sys, tempfile, tomllib
from pathlib import Path

root = Path.cwd()
hook = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
hook = hook["targets"]["wheel"]["hooks"]["mypyc"]
files = [str(root / pattern.lstrip("/")) for pattern in hook["include"]]
missing = [name for name in files if not os.path.isfile(name)]
if missing:
    sys.exit(f"pyproject.toml's mypyc include lists files that do not exist: {missing}")
with tempfile.TemporaryDirectory() as tmp:
    options = {**hook.get("options", {}), "target_dir": os.path.join(tmp, "c")}
    paths = [*hook.get("mypy-args", []), *files]
    Path(tmp, "setup.py").write_text(
        "from setuptools import setup\nfrom mypyc.build import mypycify\n"
        f"setup(name='inplace', package_dir={{'': {str(root)!r}}}, "
        f"ext_modules=mypycify({paths!r}, **{options!r}))\n"
    )
    command = [sys.executable, "setup.py", "build_ext", "--inplace", "--build-temp", "tmp"]
    built = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
    if built.returncode:
        sys.exit(built.stdout + built.stderr + "\nthe mypyc build failed")
PYTHON
        # The build's time is what the test session compares the sources with (conftest).
        find . -maxdepth 1 -name 'session_core__mypyc*' -exec touch {} +
        find session_core -name '*.so' -exec touch {} +
        "$PY" -c "import session_core, sys; print('session_core.COMPILED =', session_core.COMPILED); sys.exit(not session_core.COMPILED)"
        ;;
    pure) remove_compiled ;;
    *) echo "usage: bash run.sh demo|hub-demo|test|check|docs|bench|e2e|compile|pure" >&2; exit 2 ;;
esac
