"""`python -m session_asyncio`: the command line, now `session-py` (see `session_cli`)."""

from __future__ import annotations

from session_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
