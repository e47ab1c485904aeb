"""`python -m session_cli`: the command line (see `session_cli`)."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
