"""mypy infers a request's response type from its method and rejects wrong data."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

SNIPPET = """
    import attrs
    from session_core import Connection, Method

    @attrs.frozen
    class AddArgs:
        a: int
        b: int

    add = Method("add", request=AddArgs, response=int, error=str)
    reveal_type(add)

    def call(conn: Connection) -> None:
        conn.send_request(add, "not AddArgs")
"""


def test_mypy_infers_method_types_and_rejects_wrong_data(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(textwrap.dedent(SNIPPET))
    out, _, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "c"), str(source)]
    )
    assert 'Revealed type is "session_core._methods.Method[snippet.AddArgs, int, str]"' in out, out
    assert "snippet.py:14: error" in out, out  # the call with the wrong data
    assert status == 1
