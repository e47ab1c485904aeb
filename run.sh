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
    *) echo "usage: bash run.sh demo|hub-demo|test|check|docs|bench|e2e" >&2; exit 2 ;;
esac
