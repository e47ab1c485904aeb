"""Smoke test of the end-to-end benchmark: quick runs in real processes, checked for results.

Nothing here looks at speed. `session_asyncio` is imported at the top on purpose: if the
adapter is missing or broken, this test fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import trio

import session_asyncio
from benchmarks.e2e import cli, report, runner, variants
from benchmarks.e2e.common import CODECS, SCENARIOS_BY_NAME, big_payloads, small_payload
from benchmarks.e2e.impls import session_asyncio_peer, websockets_peer, wsproto_asyncio_peer
from benchmarks.e2e.variants import VARIANTS_BY_NAME, PeerModule, Requester, Variant

NAMES = ("floor@asyncio", "websockets@asyncio", "session_asyncio@asyncio")


def _children_left(pids: list[int]) -> list[int]:
    """Those of `pids` that still run as children of this process."""
    left = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except FileNotFoundError:
            continue
        except OSError:  # no /proc: ask the process table instead
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            parent = os.getpid()
        if parent == os.getpid():
            left.append(pid)
    return left


def test_the_project_adapter_is_importable() -> None:
    assert callable(session_asyncio.serve)
    assert callable(session_asyncio.connect)


def test_quick_run_answers_every_echo_right() -> None:
    settings = runner.Settings.quick([VARIANTS_BY_NAME[name] for name in NAMES])
    first_pid = len(runner.spawned_pids)
    result = runner.run(settings)
    assert result.unavailable == {}
    for name in NAMES:
        for scenario in settings.scenarios:
            [sample] = result.of(name, scenario.name)
            assert sample.error is None, (name, scenario.name, sample.error)
            assert sample.wrong == 0, (name, scenario.name)
            assert sample.requests == settings.plan(scenario).measure.count, (name, scenario.name)
            assert sample.ok
            assert sample.seconds > 0
            assert sample.server_cpu is not None and sample.server_cpu >= 0
            assert sample.client_cpu is not None and sample.client_cpu > 0
            assert sample.payload_bytes == (scenario.payload_size or 0)
            if scenario.latency:
                assert sample.p50_us is not None and sample.p99_us is not None
                assert 0 < sample.p50_us <= sample.p99_us
    assert result.correct
    text = report.markdown(result, "python -m benchmarks.e2e --quick")
    for name in NAMES:
        assert f"| {name} |" in text or f"| **{name}** |" in text
    assert "unavailable" not in text
    assert "all correct" in text
    # One server and one client per variant, all reaped.
    assert len(runner.spawned_pids) - first_pid == 2 * len(NAMES)
    assert _children_left(runner.spawned_pids) == []


def test_a_broken_implementation_is_reported_and_the_run_goes_on() -> None:
    broken = Variant("nosuchlib", "asyncio", "orjson", "no_such_peer", ())
    settings = runner.Settings.quick([broken, VARIANTS_BY_NAME["floor@asyncio"]])
    settings.scenarios = [SCENARIOS_BY_NAME["latency"]]
    result = runner.run(settings)
    assert result.unavailable["nosuchlib@asyncio"].startswith("cannot import: ModuleNotFoundError")
    [sample] = result.of("floor@asyncio", "latency")
    assert sample.ok
    assert "unavailable (cannot import: ModuleNotFoundError" in report.markdown(result, "cmd")
    assert _children_left(runner.spawned_pids) == []


def test_command_line_writes_its_section_only(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    output.write_text("# Title\n\nnotes kept\n", encoding="utf-8")
    args = ["--quick", "--impl", "floor", "--loop", "uvloop", "--codec", "orjson", "--scenario", "latency"]
    for _ in range(2):
        assert cli.main([*args, "--write", "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert "notes kept" in text
    assert text.count(report.BEGIN) == 1
    assert text.count(report.END) == 1
    assert "| floor | uvloop | orjson |" in text
    assert "python -m benchmarks.e2e --quick" in text


async def _cross(server: PeerModule, client: PeerModule, codec_name: str = "orjson") -> None:
    codec = CODECS[codec_name]
    async with server.serve(codec) as port:
        connection: AbstractAsyncContextManager[Requester] = client.connect(port, codec)
        async with connection as request:
            values: list[Any] = [small_payload(7), None, [1, "é", {"a": 2.5}], big_payloads(70_000)[1]]
            for value in values:
                assert await request(value) == value


def test_hand_written_peers_speak_the_protocol_of_session_py() -> None:
    # A hand-written client against a session-py server and the other way round: the
    # competitors are measured on the very wire format session-py speaks.
    pairs = [
        (session_asyncio_peer, websockets_peer),
        (websockets_peer, session_asyncio_peer),
        (session_asyncio_peer, wsproto_asyncio_peer),
        (wsproto_asyncio_peer, session_asyncio_peer),
    ]
    for server, client in pairs:
        asyncio.run(_cross(server, client))
    asyncio.run(_cross(session_asyncio_peer, websockets_peer, "json"))
    # Imported here: a broken session_trio fails this test, not the whole module.
    from benchmarks.e2e.impls import session_trio_peer, wsproto_trio_peer  # noqa: PLC0415

    for server, client in [(session_trio_peer, wsproto_trio_peer), (wsproto_trio_peer, session_trio_peer)]:
        trio.run(_cross, server, client)


def test_session_py_rows_say_which_build_their_server_ran() -> None:
    names = ("session_asyncio@asyncio", "session_asyncio+pure@asyncio")
    settings = runner.Settings.quick([VARIANTS_BY_NAME[name] for name in names])
    settings.scenarios = [SCENARIOS_BY_NAME["payload64k"]]
    result = runner.run(settings)
    assert result.unavailable == {}
    for name in names:
        [sample] = result.of(name, "payload64k")
        assert sample.ok, (name, sample.error)
    # What a process of this environment gets, asked apart from this one.
    code = "import session_core; print(getattr(session_core, 'COMPILED', False))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    build = "compiled" if out.stdout.strip() == "True" else "pure"
    # The test extra installs the speedups extra.
    masking = "C" if os.environ.get("SESSION_PY_NO_SPEEDUPS", "") in ("", "0") else "Python"
    assert result.builds["session_asyncio@asyncio"] == f"{build}, {masking} masking"
    assert result.builds["session_asyncio+pure@asyncio"] == f"pure, {masking} masking"
    text = report.markdown(result, "cmd")
    assert f"| **session_asyncio** | asyncio | orjson | {build}, {masking} masking |" in text
    assert f"| **session_asyncio+pure** | asyncio | orjson | pure, {masking} masking |" in text
    assert "| **session_asyncio+pure@asyncio** |" in text
    assert _children_left(runner.spawned_pids) == []


def test_pure_twins_come_with_a_compiled_build_or_by_name() -> None:
    pure = "session_asyncio+pure@uvloop"
    assert pure not in {v.name for v in variants.select(["session_asyncio"], pure_twins=False)}
    assert pure in {v.name for v in variants.select(["session_asyncio"], pure_twins=True)}
    assert [v.name for v in variants.select([pure], pure_twins=False)] == [pure]
    assert VARIANTS_BY_NAME[pure].env == {"SESSION_PY_NO_EXTENSIONS": "1"}
    assert VARIANTS_BY_NAME["session_asyncio@uvloop"].env == {}
    for variant in variants.VARIANTS:
        assert variants.Variant.from_json(variant.to_json()) == variant
