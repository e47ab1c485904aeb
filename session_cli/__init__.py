"""session_cli: the command line of session-py, `session-py call|notify|listen|serve`.

Installed as the console script `session-py`; `python -m session_cli` (and, for the
habit of earlier versions, `python -m session_asyncio`) run the same thing. It drives
sessions through `session_asyncio`.
"""

from __future__ import annotations

from ._cli import Streams, build_parser, main, run

__all__ = ["Streams", "build_parser", "main", "run"]
