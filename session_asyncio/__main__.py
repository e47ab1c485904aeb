"""`python -m session_asyncio`: the command line (see `session_asyncio._cli`)."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
