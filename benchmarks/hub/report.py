"""Turning a `Report` into markdown: a table per scenario, the ratios, the targets."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from .runner import NODES, TITLES, Report, Result

RESULTS_FILE = Path(__file__).resolve().parents[1] / "HUB-RESULTS.md"
BEGIN = "<!-- hub-results:begin -->"
END = "<!-- hub-results:end -->"
OURS, THEIRS = "session_hub", "socketio"
FAN_OUT = ("biggroup", "smallgroups", "direct")
RATE_TARGET = 3.0
"The issue's target: at least 3x python-socketio's deliveries per second, at an equal or lower p99."
REQUEST_P50_TARGET_MS = 1.0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(cpu: float | None, seconds: float) -> str:
    return "-" if cpu is None or seconds <= 0 else f"{100 * cpu / seconds:.0f}%"


def cpu_per_delivery(result: Result) -> float | None:
    """CPU microseconds (servers + Redis) per delivery (or round trip), None without any."""
    if result.rate <= 0 or result.measured <= 0:
        return None
    return 1e6 * (sum(result.server_cpu) + (result.redis_cpu or 0.0)) / (result.rate * result.measured)


def _row(result: Result) -> str:
    if result.error and not result.received:
        return f"| {result.stack} | {result.payload} | failed: {result.error} |  |  |  |  |  |  |  |"
    servers = " + ".join(_pct(cpu, result.measured) for cpu in result.server_cpu) or "-"
    cpu = cpu_per_delivery(result)
    per = "-" if cpu is None else f"{cpu:.0f}"
    loss = f"{result.lost} / {result.expected}"
    note = f" ({result.error})" if result.error else ""
    return (
        f"| {result.stack} | {result.payload} | {result.rate:,.0f}{note} | {_ms(result.p50_ms)} | "
        f"{_ms(result.p99_ms)} | {loss} | {result.duplicates} | {result.reordered} | {servers} | "
        f"{_pct(result.redis_cpu, result.measured)} | {per} |"
    )


def _slow(result: Result) -> str:
    extra = result.extra
    if "slow_received" not in extra:
        return f"| {result.stack} | {result.payload} | - | - | - |"
    if extra.get("slow_closed"):
        fate = f"closed, code {extra.get('slow_close_code')}"
    else:
        fate = "still open"
    growth = extra.get("server_rss_growth_kib")
    return (
        f"| {result.stack} | {result.payload} | {extra['slow_received']:,} of {extra['slow_published']:,} | "
        f"{fate} | {'-' if growth is None else f'{growth:,} KiB'} |"
    )


def _ratio(report: Report, scenario: str, size: int) -> str | None:
    ours, theirs = report.get(OURS, scenario, size), report.get(THEIRS, scenario, size)
    if ours is None or theirs is None or theirs.rate <= 0 or ours.rate <= 0:
        return None
    ratio = ours.rate / theirs.rate
    if scenario == "request":
        met = ours.p50_ms is not None and ours.p50_ms < REQUEST_P50_TARGET_MS
        target = f"p50 {_ms(ours.p50_ms)} ms (target < 1 ms: {'met' if met else 'not met'})"
    else:
        p99_ok = ours.p99_ms is not None and theirs.p99_ms is not None and ours.p99_ms <= theirs.p99_ms
        met = ratio >= RATE_TARGET and p99_ok
        p99 = f"p99 {_ms(ours.p99_ms)} vs {_ms(theirs.p99_ms)} ms"
        target = f"{p99}; >= 3x at equal or lower p99: {'met' if met else 'not met'}"
        if scenario not in FAN_OUT:
            target = f"p50 {_ms(ours.p50_ms)} vs {_ms(theirs.p50_ms)} ms, {p99}"
    ours_cpu, theirs_cpu = cpu_per_delivery(ours), cpu_per_delivery(theirs)
    cpu = f"{theirs_cpu / ours_cpu:.2f}x" if ours_cpu and theirs_cpu else "-"
    return f"| {scenario} | {size} | {ratio:.2f}x | {cpu} | {target} |"


def _versions() -> str:
    names = ["python-socketio", "python-engineio", "aiohttp", "redis", "coredis", "uvloop", "orjson"]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (missing)")
    return ", ".join(parts)


def markdown(report: Report, command: str) -> str:
    """The generated section of HUB-RESULTS.md."""
    s = report.settings
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.started))
    lines = [
        BEGIN,
        "",
        f"## Run of {when}",
        "",
        f"`{command}`: {s.clients} clients ({s.clients // NODES} on each of {NODES} server processes per "
        f"stack), {s.warmup:g} s of warm-up then {s.seconds:g} s measured per cell, at most {s.window:,} "
        f"deliveries in flight, {s.lanes} publishing lanes per process, loop {s.loop} everywhere. "
        f"Whole run: {report.wall:.0f} s.",
        "",
        "Columns: deliveries (request scenarios: round trips) per second in the measured window; "
        "publish-to-receipt latency (request: round trip) p50 and p99 in ms; lost / owed "
        "deliveries (request: failed / made); duplicates; deliveries that arrived after a later "
        "one of the same publisher and lane; CPU of each server process and of Redis as a share "
        "of one core over the measured window; CPU microseconds (servers + Redis) per delivery.",
        "",
    ]
    for scenario in s.scenarios:
        lines += [
            f"### {scenario}: {TITLES[scenario]}",
            "",
            "| stack | bytes | per s | p50 ms | p99 ms | lost | dup | reord | server CPU | Redis CPU "
            "| CPU us/msg |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [_row(r) for r in report.results if r.scenario == scenario]
        if scenario == "slow":
            lines += [
                "",
                "The slow client (on server process 2) stops reading after it joined, with a 4 KiB "
                "receive buffer; the table above counts the other clients only. Afterwards it reads "
                "again for up to 3 s:",
                "",
                "| stack | bytes | slow client got | its connection | server memory growth |",
                "| --- | --- | --- | --- | --- |",
            ]
            lines += [_slow(r) for r in report.results if r.scenario == "slow"]
        if scenario in ("request", "request16"):
            errors = [r for r in report.results if r.scenario == scenario and r.extra.get("first_error")]
            lines += [
                "",
                *(f"- {r.stack} {r.payload} B: first error `{r.extra['first_error']}`" for r in errors),
            ]
        lines.append("")
    ratios = [
        line for scenario in s.scenarios for size in s.payloads if (line := _ratio(report, scenario, size))
    ]
    if ratios:
        lines += [
            "### session_hub over python-socketio, same run",
            "",
            "| scenario | bytes | per-second ratio | CPU per delivery, theirs / ours | latency, and the "
            "issue's target |",
            "| --- | --- | --- | --- | --- |",
            *ratios,
            "",
        ]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    lines += [
        "### Machine and versions",
        "",
        f"- {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}, redis-server from the system's package"
        + (f"; load average after the run {load[0]:.2f}" if load else ""),
        f"- {_versions()}",
        "",
        END,
    ]
    return "\n".join(lines)


def write(section: str, path: Path = RESULTS_FILE) -> None:
    """Put `section` between the markers of `path` (kept: everything else)."""
    text = path.read_text(encoding="utf-8") if path.exists() else f"{BEGIN}\n{END}\n"
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        text = text.rstrip("\n") + f"\n\n{section}\n"
    else:
        text = text[:start] + section + text[end + len(END) :]
    path.write_text(text, encoding="utf-8")


def command_line(argv: list[str] | None = None) -> str:
    """How this run was started, without machine paths (`--json`, `--output` and their files)."""
    words: list[str] = []
    skip = False
    for word in sys.argv[1:] if argv is None else argv:
        if skip:
            skip = False
        elif word in ("--json", "--output", "--redis-server"):
            skip = True
        elif not word.startswith(("--json=", "--output=", "--redis-server=")):
            words.append(word)
    return " ".join(["python -m benchmarks.hub", *words])
