"""Smoke test of the core benchmark: a quick run in-process, checked for results, not speed."""

from __future__ import annotations

from pathlib import Path

import pytest

import session_core
from benchmarks import builds, core_bench
from session_core import _mask


def test_quick_run_measures_every_variant_with_right_answers() -> None:
    settings = core_bench.Settings.quick()
    report = core_bench.run(settings)
    names = {m.variant for m in report.measurements}
    assert names == {"typed", "untyped", "raw wsproto"}
    assert len(report.measurements) == 3 * len(settings.modes)
    for m in report.measurements:
        assert m.in_flight in settings.modes
        assert len(m.seconds) == settings.rounds
        assert all(s > 0 for s in m.seconds)
        assert m.count == settings.count
        assert sum(t.answered for t in m.tallies) == settings.rounds * settings.count, m.variant
        for tally in m.tallies:
            assert tally.answered == m.slice_count, m.variant
            assert tally.wrong == 0, m.variant
            assert tally.total == core_bench.expected_total(m.slice_count), m.variant
        assert m.correct
    assert report.correct
    assert report.ratio(report.get("raw wsproto", 1)) == 1.0
    table = core_bench.results_markdown(report, "python -m benchmarks.core_bench --quick")
    for name in names:
        assert f"| {name} |" in table


@pytest.mark.parametrize("in_flight", [1, 3, 200])
def test_every_variant_answers_right_with_odd_batches(in_flight: int) -> None:
    # 200 in flight is over the server's default max_incoming_requests (128): reading
    # pauses and resumes as answers go out, and every request still gets its answer.
    for factory in core_bench.VARIANTS:
        tally = factory().run(250, in_flight)
        assert tally.correct_for(250), (factory, tally)


def test_the_floor_writes_the_same_text_as_session_core() -> None:
    for name, (ours, raw) in core_bench.wire_texts().items():
        assert ours == raw, name
    assert (
        core_bench.wire_texts()["request"][0]
        == '{"type":"request","id":1,"method":"add","data":{"a":2,"b":3}}'
    )


def test_write_replaces_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Title\n\nnotes kept\n", encoding="utf-8")
    core_bench.write_sections({"results": "first"}, path)
    core_bench.write_sections({"results": "second"}, path)
    text = path.read_text(encoding="utf-8")
    assert "notes kept" in text
    assert "second" in text
    assert "first" not in text
    assert text.count("<!-- results:begin -->") == 1


def test_main_quick_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert core_bench.main(["--quick", "--rounds", "1", "--count", "50"]) == 0
    out = capsys.readouterr().out
    assert "| typed | 1 (latency) |" in out
    assert "Every answer correct in every run: yes." in out


def test_profile_accounts_for_all_the_time() -> None:
    stats = core_bench.profile_typed(200, 1)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    times = core_bench.categorize(raw)
    assert sum(times.values()) == pytest.approx(total)
    if not builds.compiled_build():  # compiled modules' own frames are invisible to cProfile
        assert times[core_bench.WSPROTO] + times[core_bench.FRAMING] > 0
    assert times[core_bench.SESSION_CORE] > 0
    text = core_bench.profile_markdown(core_bench.Settings(rounds=1, count=200), "cmd")
    assert text.count("### typed") == 2


def test_both_builds_are_reported_in_one_run(capsys: pytest.CaptureFixture[str]) -> None:
    # `both` also runs the pure-Python build in a process of its own (`auto` does so when
    # this process runs the compiled one): two tables, each saying which build made it.
    assert core_bench.main(["--quick", "--rounds", "1", "--count", "50", "--builds", "both"]) == 0
    out = capsys.readouterr().out
    assert out.count("| typed | 1 (latency) |") == 2
    assert f"### Build: {builds.current_build()}" in out
    assert "### Build: pure (`SESSION_PY_NO_EXTENSIONS=1`)" in out
    masking = "C" if _mask.ACCELERATED else "Python"
    assert f"- Build: pure, {masking} masking" in out
    assert out.count("Every answer correct in every run: yes.") == 2


def test_the_build_is_named() -> None:
    compiled = bool(getattr(session_core, "COMPILED", False))
    assert builds.current_build().startswith("compiled, " if compiled else "pure, ")
    assert builds.compiled_build() is compiled
