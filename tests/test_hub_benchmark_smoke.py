"""The hub benchmark's harness runs on both stacks and accounts for every delivery.

A smoke run of `python -m benchmarks.hub` (tiny counts, a fraction of a second per cell):
it checks the shape of the results and the bookkeeping, never a speed. Skipped where
`redis-server` is not installed, unless `SESSION_PY_REQUIRE_PEERS=1` (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.hub import report
from benchmarks.hub.cli import main
from benchmarks.hub.runner import SCENARIOS, Settings, run

pytestmark = pytest.mark.filterwarnings("ignore::BytesWarning")


@pytest.fixture
def redis_installed() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("SESSION_PY_REQUIRE_PEERS") == "1":
            pytest.fail("redis-server is not installed and SESSION_PY_REQUIRE_PEERS=1")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.mark.usefixtures("redis_installed")
def test_every_cell_runs_and_every_delivery_is_counted() -> None:
    settings = Settings(payloads=[256], clients=6, seconds=0.25, warmup=0.05, window=120, requests=50)
    result = run(settings)
    cells = {(r.stack, r.scenario) for r in result.results}
    assert cells == {(stack, scenario) for stack in ("session_hub", "socketio") for scenario in SCENARIOS}
    for cell in result.results:
        assert cell.error is None, (cell.stack, cell.scenario, cell.error)
        assert cell.received > 0, (cell.stack, cell.scenario)
        if cell.stack == "session_hub":
            # Ours loses nothing on a healthy Redis at this load (python-socketio has been
            # seen to lose a few deliveries on a loaded machine: the report counts them).
            assert cell.lost == 0 and cell.expected == cell.received, cell.scenario
            assert cell.duplicates == 0, cell.scenario
        assert len(cell.server_cpu) == 2
        assert cell.p50_ms is not None and cell.p99_ms is not None and cell.p50_ms <= cell.p99_ms
        if cell.scenario in ("request", "request16"):
            assert cell.extra["wrong_answers"] == 0
        if cell.scenario == "slow":
            assert cell.extra["slow_published"] > 0
    section = report.markdown(result, "python -m benchmarks.hub --quick")
    assert section.startswith(report.BEGIN) and section.endswith(report.END)
    assert "### session_hub over python-socketio, same run" in section
    assert "/work/" not in section and str(Path.home()) not in section


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scenario", "nope"]) == 2
    assert main(["--clients", "1"]) == 2
    assert "error:" in capsys.readouterr().err


def test_write_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "HUB-RESULTS.md"
    path.write_text(f"# Title\n\nby hand\n\n{report.BEGIN}\nold\n{report.END}\n\ntail\n", encoding="utf-8")
    report.write(f"{report.BEGIN}\nnew\n{report.END}", path)
    assert (
        path.read_text(encoding="utf-8")
        == f"# Title\n\nby hand\n\n{report.BEGIN}\nnew\n{report.END}\n\ntail\n"
    )


def test_the_recorded_command_has_no_machine_paths() -> None:
    command = report.command_line(
        ["--seconds", "1", "--json", "/tmp/x.json", "--output=/tmp/y.md", "--write"]
    )
    assert command == "python -m benchmarks.hub --seconds 1 --write"
