"""Turning a `Report` into markdown: tables, ratios, targets, profile, versions, machine."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .common import SCENARIOS_BY_NAME, Scenario
from .profile import CATEGORIES, REPO_ROOTS, Breakdown, ProfileResult
from .results import Sample, Spread
from .runner import Report
from .variants import DESCRIPTIONS, Variant

RESULTS_FILE = Path(__file__).resolve().parents[1] / "RESULTS.md"
BEGIN = "<!-- e2e-results:begin -->"
END = "<!-- e2e-results:end -->"
TARGET_SCENARIO = "inflight100"


@dataclass(frozen=True)
class Target:
    """A ratio the issue asks for, in the same run."""

    variant: str
    baseline: str
    minimum: float


TARGETS = (
    Target("session_asyncio@uvloop", "websockets@uvloop", 1.5),
    Target("session_trio@trio", "trio-websocket@trio", 2.0),
)


# -- aggregation -----------------------------------------------------------------------------


def failure(samples: list[Sample]) -> str | None:
    """Why a cell has no result (None when some repeat measured)."""
    if any(s.ok for s in samples):
        return None
    if not samples:
        return "not run"
    reasons = [s.error or (f"{s.wrong} wrong answers" if s.wrong else "no answers") for s in samples]
    return max(set(reasons), key=reasons.count)


def spread(samples: Iterable[Sample], value: Callable[[Sample], float | None]) -> Spread | None:
    """Median/min/max of `value` over the measured samples."""
    values = [v for s in samples if s.ok and (v := value(s)) is not None]
    return Spread.of(values)


def baseline_of(variant: Variant) -> str | None:
    """The `websockets` row on the same loop and codec (trio: trio-websocket)."""
    if variant.loop == "trio":
        return "trio-websocket@trio"
    suffix = "" if variant.codec == "orjson" else f"+{variant.codec}"
    return f"websockets{suffix}@{variant.loop}"


def floor_of(variant: Variant) -> str:
    """The floor on the same loop and codec (trio: the floor on asyncio's loop)."""
    suffix = "" if variant.codec == "orjson" else f"+{variant.codec}"
    loop = "asyncio" if variant.loop == "trio" else variant.loop
    return f"floor{suffix}@{loop}"


def ratio(report: Report, variant: str, baseline: str, scenario: str) -> Spread | None:
    """`variant` over `baseline`, round by round (same round, same conditions), summarized."""
    ours = {s.repeat: s for s in report.of(variant, scenario) if s.ok}
    theirs = {s.repeat: s for s in report.of(baseline, scenario) if s.ok}
    values = [ours[r].headline / theirs[r].headline for r in ours if r in theirs and theirs[r].headline > 0]
    return Spread.of(values)


def row_failure(report: Report, variant: Variant) -> str | None:
    """Why a whole row is unavailable: it could not serve, or every cell failed alike."""
    if variant.name in report.unavailable:
        return report.unavailable[variant.name]
    reasons = [failure(report.of(variant.name, s.name)) for s in report.settings.scenarios]
    if reasons and all(r is not None for r in reasons) and len(set(reasons)) == 1:
        return reasons[0]
    return None


# -- formatting ------------------------------------------------------------------------------


def number(value: float) -> str:
    """A value with sensible digits."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(value: Spread | None, with_range: bool = True) -> str:
    """`median (min-max)`, or a dash."""
    if value is None:
        return "-"
    if not with_range or len(value.values) < 2:
        return number(value.median)
    return f"{number(value.median)} ({number(value.low)}-{number(value.high)})"


def times(value: Spread | None) -> str:
    """A ratio: `1.23x (1.10-1.30)`."""
    if value is None:
        return "-"
    if len(value.values) < 2:
        return f"{value.median:.2f}x"
    return f"{value.median:.2f}x ({value.low:.2f}-{value.high:.2f})"


def _short(reason: str, size: int = 90) -> str:
    # An error's text may name files: never write a path of the machine that ran the
    # benchmark into the committed results.
    for root in REPO_ROOTS:
        reason = reason.replace(root, "")
    reason = reason.replace(str(Path.home()), "~")
    reason = reason.replace("|", "/").replace("\n", " ")
    return reason if len(reason) <= size else reason[: size - 3] + "..."


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- sections --------------------------------------------------------------------------------


def summary_table(report: Report) -> str:
    """One row per variant, the medians of every scenario."""
    scenarios = report.settings.scenarios
    header = ["implementation", "loop", "codec", "build"]
    for scenario in scenarios:
        header.append(f"{scenario.title} ({scenario.unit})")
        if scenario.latency:
            header += ["p50 µs", "p99 µs"]
    header.append("server CPU µs/req (100 in flight)")
    rows = []
    for variant in report.settings.variants:
        library = variant.library + (f"+{variant.build}" if variant.build else "")
        name = f"**{library}**" if variant.ours else library
        row = [name, variant.loop, variant.codec, report.builds.get(variant.name, "-")]
        broken = row_failure(report, variant)
        if broken is not None:
            row.append(f"unavailable ({_short(broken)})")
            row += ["-"] * (len(header) - len(row))
            rows.append(row)
            continue
        for scenario in scenarios:
            samples = report.of(variant.name, scenario.name)
            why = failure(samples)
            row.append(f"failed ({_short(why, 60)})" if why else cell(spread(samples, _headline), False))
            if scenario.latency:
                row.append(cell(spread(samples, lambda s: s.p50_us), False))
                row.append(cell(spread(samples, lambda s: s.p99_us), False))
        row.append(cell(spread(report.of(variant.name, TARGET_SCENARIO), lambda s: s.server_us), False))
        rows.append(row)
    return table(header, rows)


def _headline(sample: Sample) -> float:
    return sample.headline


def scenario_table(report: Report, scenario: Scenario) -> str:
    """Every variant on one scenario: spread, ratios, CPU per request."""
    header = [
        "implementation",
        f"{scenario.unit} median (min-max)",
        "x websockets, same loop",
        "x floor",
        "server CPU µs/req",
        "client CPU µs/req",
    ]
    if scenario.latency:
        header += ["p50 µs", "p99 µs"]
    rows = []
    for variant in report.settings.variants:
        samples = report.of(variant.name, scenario.name)
        why = row_failure(report, variant) or failure(samples)
        label = f"**{variant.name}**" if variant.ours else variant.name
        if why is not None:
            rows.append([label, f"unavailable ({_short(why)})", *(["-"] * (len(header) - 2))])
            continue
        base = baseline_of(variant)
        row = [
            label,
            cell(spread(samples, _headline)),
            times(ratio(report, variant.name, base, scenario.name)) if base else "-",
            times(ratio(report, variant.name, floor_of(variant), scenario.name)),
            cell(spread(samples, lambda s: s.server_us)),
            cell(spread(samples, lambda s: s.client_us)),
        ]
        if scenario.latency:
            row.append(cell(spread(samples, lambda s: s.p50_us)))
            row.append(cell(spread(samples, lambda s: s.p99_us)))
        rows.append(row)
    return table(header, rows)


def target_results(report: Report) -> list[tuple[Target, Spread | None]]:
    """Each target's ratio over the rounds (None when one side did not run)."""
    return [(t, ratio(report, t.variant, t.baseline, TARGET_SCENARIO)) for t in TARGETS]


def cost_ratio(report: Report, variant: str, baseline: str, scenario: str) -> Spread | None:
    """How many times less CPU (server + client, per request) `variant` costs than `baseline`.

    Round by round, like `ratio`. CPU time does not count the time a process waits for a
    core, so this holds up on a busy machine far better than requests/s do.
    """

    def cost(sample: Sample) -> float | None:
        if sample.server_us is None or sample.client_us is None:
            return None
        return sample.server_us + sample.client_us

    ours = {s.repeat: cost(s) for s in report.of(variant, scenario) if s.ok}
    theirs = {s.repeat: cost(s) for s in report.of(baseline, scenario) if s.ok}
    values = [b / a for r, a in ours.items() if a and (b := theirs.get(r)) is not None and b > 0]
    return Spread.of(values)


def targets_section(report: Report) -> str:
    """The issue's targets, measured in this run."""
    rows = []
    for target, value in target_results(report):
        if value is None:
            verdict = "not measured (a side did not run)"
        else:
            verdict = "**met**" if value.median >= target.minimum else "**missed**"
        cost = cost_ratio(report, target.variant, target.baseline, TARGET_SCENARIO)
        rows.append(
            [
                f"`{target.variant}` vs `{target.baseline}`",
                f">= {target.minimum:g}x",
                times(value),
                verdict,
                times(cost),
            ]
        )
    note = (
        "Ratios of requests/s with 100 requests in flight on one connection, both sides orjson, "
        "computed round by round (the two rows of one round ran a few minutes apart at most) "
        "and summarized as median (min-max) over the rounds. The last column compares CPU "
        "time per request instead (server + client, the baseline's over ours): it does not "
        "count the time a process waits for a core, so it is the steadier figure on a busy "
        "machine; in this closed loop on two cores, requests/s follow it when nothing else runs."
    )
    header = ["target", "wanted", "requests/s ratio", "verdict", "CPU cost ratio"]
    return note + "\n\n" + table(header, rows)


def profile_section(profiles: list[ProfileResult]) -> str:
    """Shares of busy time by category, server and client, for each profiled variant."""
    if not profiles:
        return "No profile in this run (`--no-profile`, or `--quick`)."
    parts = [
        "pyinstrument samples (every 0.5 ms, wall clock) of the server's and the client's event "
        "loop thread during one measured run. A sample counts for the category of its innermost "
        "frame (C functions and helpers such as generated `__init__`s count for their caller, "
        "`loads`/`dumps` for JSON, socket calls for the event loop). Shares are of the busy "
        "(not idle) time; µs/req spreads the process's measured CPU time per request by those "
        "shares. Idle is the selector's `poll` on asyncio's loop; uvloop's C code shows no frames, "
        "so there the thread's idle time (wall time neither running nor waiting for a core, from "
        "Linux's schedstat) is taken out of the event loop's time. Also on uvloop, its C methods "
        "called from Python (`transport.write`, which makes the send system call) count as their "
        "caller's own time (session_asyncio's `_pump`); on asyncio's loop they show as "
        "`socket.send`. The profiler slows everything down about threefold: compare shares, not "
        "the µs with the unprofiled tables.",
        "",
    ]
    for result in profiles:
        parts.append(f"#### {result.variant}, {SCENARIOS_BY_NAME[result.scenario].title}\n")
        if result.error is not None or result.server is None or result.client is None:
            parts.append(f"Profile failed: {_short(result.error or 'no data')}\n")
            continue
        rate = result.sample.rate
        parts.append(
            f"{number(rate)} req/s while profiled (the profiler slows both sides). "
            f"Idle: server {result.server.idle_share:.0%}, "
            f"client {result.client.idle_share:.0%} of wall time; "
            f"CPU: server {_per_request(result.server, result.sample)}, "
            f"client {_per_request(result.client, result.sample)} per request.\n"
        )
        rows = []
        requests = result.sample.requests
        for name in CATEGORIES:
            server, client = result.server.share(name), result.client.share(name)
            if server >= 0.0005 or client >= 0.0005:
                rows.append(
                    [
                        name,
                        f"{server:.1%}",
                        f"{result.server.cpu_per_request(name, requests):.1f}",
                        f"{client:.1%}",
                        f"{result.client.cpu_per_request(name, requests):.1f}",
                    ]
                )
        header = ["where", "server share", "server µs/req", "client share", "client µs/req"]
        parts.append(table(header, rows) + "\n")
        parts.append("<details><summary>hottest frames (self time, share of wall time)</summary>\n")
        frame_rows = []
        for role, data in (("server", result.server), ("client", result.client)):
            frame_rows += [[role, f"`{frame}`", f"{seconds / data.total:.1%}"] for frame, seconds in data.top]
        parts.append(table(["side", "frame", "share"], frame_rows) + "\n\n</details>\n")
    return "\n".join(parts)


def _per_request(data: Breakdown, sample: Sample) -> str:
    if sample.requests == 0 or data.cpu <= 0:
        return "-"
    return f"{data.cpu / sample.requests * 1e6:.0f} µs"


def versions(report: Report) -> list[tuple[str, str]]:
    """Python and every distribution the run's variants use."""
    names: dict[str, None] = {}
    for variant in report.settings.variants:
        names.update(dict.fromkeys(variant.packages))
    names.update(dict.fromkeys(("trio", "uvloop", "pyinstrument")))
    out = [("python", f"{platform.python_implementation()} {platform.python_version()}")]
    for name in sorted(names):
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    try:
        out.append(("session-py", metadata.version("session-py")))
    except metadata.PackageNotFoundError:
        out.append(("session-py", "source tree (not installed)"))
    return out


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> list[tuple[str, str]]:
    """Platform, CPU and cores."""
    try:
        usable = str(len(os.sched_getaffinity(0)))
    except AttributeError:
        usable = "?"
    memory = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    return [
        ("platform", platform.platform()),
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} (usable by this process: {usable})"),
        ("memory", memory),
    ]


def noise(report: Report) -> str:
    """How much the repeats of a cell disagreed, and the machine's load."""
    ranges = []
    worst = ("", 0.0)
    for variant in report.settings.variants:
        for scenario in report.settings.scenarios:
            value = spread(report.of(variant.name, scenario.name), _headline)
            if value is not None and len(value.values) > 1:
                ranges.append(value.relative_range)
                if value.relative_range > worst[1]:
                    worst = (f"{variant.name}, {scenario.title}", value.relative_range)
    waits = [
        wait / s.seconds
        for s in report.samples
        if s.ok
        for wait in (s.server_wait, s.client_wait)
        if wait is not None
    ]
    before = " ".join(f"{x:.2f}" for x in report.load_before)
    after = " ".join(f"{x:.2f}" for x in report.load_after)
    text = f"Load average (1, 5, 15 min) before the run: {before}; after: {after}."
    if ranges:
        text += (
            " Spread of the repeats, (max - min) / median of a cell: "
            f"median {statistics.median(ranges):.0%}, "
            f"worst {worst[1]:.0%} ({worst[0]})."
        )
    if waits:
        text += (
            " Time the server's or the client's event loop waited for a core (taken by other "
            f"processes) during a measured run: median {statistics.median(waits):.0%}, "
            f"worst {max(waits):.0%} of the run."
        )
    return text


def markdown(report: Report, command: str) -> str:
    """The whole generated section."""
    settings = report.settings
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.started))
    if settings.seconds is None:
        budget = f"quick counts x{settings.count_scale:g} (warm-up counts as listed in the code)"
    else:
        budget = f"{settings.seconds:g} s measured after {settings.warmup_seconds:g} s of warm-up"
    parts = [
        "## Results",
        "",
        f"Command: `{command}` — run {when}, {report.wall_seconds / 60:.1f} min in all; "
        f"{settings.repeats} round(s), each scenario {budget}. Every answer checked: "
        f"{'all correct' if report.correct else '**SOME WRONG**'}."
        + (
            f" **{settings.jobs} implementations ran at once (a smoke run): the numbers are not comparable.**"
            if settings.jobs > 1
            else ""
        ),
        "",
        noise(report),
        "",
        "Requests/s and MB/s (payload bytes echoed per second, counted one way) are medians over "
        "the rounds; latency is per request, one request in flight. Server CPU is the server "
        "process's CPU time during the measured run divided by the requests. **Bold**: session-py; "
        "its build is what its server process said it ran (`session_core.COMPILED`, and whether "
        "masking ran in C), and `+pure` rows ran with `SESSION_PY_NO_EXTENSIONS=1`.",
        "",
        summary_table(report),
        "",
        "### Targets",
        "",
        targets_section(report),
        "",
    ]
    for scenario in settings.scenarios:
        parts += [f"### {scenario.title}", "", scenario_table(report, scenario), ""]
    parts += [
        "Ratios: against `websockets` on the same loop and codec (for trio rows: `trio-websocket`), "
        "and against the floor on the same loop and codec (for trio rows: the floor on asyncio), "
        "each computed within a round, then summarized over the rounds.",
        "",
        f"### Where the time goes ({SCENARIOS_BY_NAME[settings.profile_scenario].title}, profiled)",
        "",
        profile_section(report.profiles),
        "",
        "### Implementations",
        "",
        table(
            ["implementation", "what runs"],
            [
                [lib, text]
                for lib, text in DESCRIPTIONS.items()
                if any(v.library == lib for v in settings.variants)
            ],
        ),
        "",
        "### Versions",
        "",
        table(["package", "version"], [[a, b] for a, b in versions(report)]),
        "",
        "### Machine",
        "",
        table(["", ""], [[a, b] for a, b in machine()]),
    ]
    return "\n".join(parts) + "\n"


def write(section: str, path: Path = RESULTS_FILE) -> None:
    """Put `section` between the markers of `path`, keeping everything else."""
    block = f"{BEGIN}\n{section}{END}\n"
    if not path.exists():
        path.write_text(f"# End-to-end benchmark results\n\n{block}", encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        path.write_text(head + block + tail.lstrip("\n"), encoding="utf-8")
    else:
        path.write_text(text.rstrip("\n") + "\n\n" + block, encoding="utf-8")


def command_line() -> str:
    """How this process was started, as a user would type it."""
    args = sys.argv[1:]
    return " ".join(["python -m benchmarks.e2e", *args])
