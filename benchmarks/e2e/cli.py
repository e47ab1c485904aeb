"""The command line: `python -m benchmarks.e2e [options]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from . import report as reporting
from .common import SCENARIOS, SCENARIOS_BY_NAME
from .runner import Settings, run
from .variants import DESCRIPTIONS, LIBRARIES, VARIANTS, select


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parser() -> argparse.ArgumentParser:
    """The options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e",
        description=(
            "End-to-end benchmark: server and client in separate processes over loopback, "
            "session-py against websockets, aiohttp, picows, trio-websocket, wsproto by hand "
            "and a length-prefixed floor. The default run takes about 15 minutes."
        ),
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny counts, one round, no profile")
    p.add_argument(
        "--impl",
        type=_names,
        default=[],
        help=f"implementations, comma-separated: {', '.join(LIBRARIES)}; session-py's come with "
        "their `+pure` twins (pure-Python build forced) when a compiled build is present, "
        "or name one in full (`session_asyncio+pure@uvloop`, see --list)",
    )
    p.add_argument("--loop", type=_names, default=[], help="event loops: asyncio, uvloop, trio")
    p.add_argument("--codec", type=_names, default=[], help="codecs: orjson, json")
    p.add_argument(
        "--scenario", type=_names, default=[], help=f"scenarios: {', '.join(s.name for s in SCENARIOS)}"
    )
    p.add_argument("--repeats", type=int, help="rounds (default 5; --quick: 1)")
    p.add_argument("--seconds", type=float, help="measured seconds per scenario run (default 1)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per scenario run (default 0.3)")
    p.add_argument("--jobs", type=int, help="implementations measured at once (default 1; --quick: 4)")
    p.add_argument("--count-scale", type=float, help="with --quick: multiply the request counts")
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile (default: on, off with --quick)",
    )
    p.add_argument("--profile-seconds", type=float, help="seconds of each profiled run (default 3)")
    p.add_argument("--profile-scenario", help="the scenario profiled (default inflight100)")
    p.add_argument(
        "--profile-impl", type=_names, default=[], help="variants profiled, e.g. session_asyncio@uvloop"
    )
    p.add_argument("--write", action="store_true", help="write the results into benchmarks/RESULTS.md")
    p.add_argument("--output", type=Path, default=reporting.RESULTS_FILE, help="the file --write writes")
    p.add_argument("--json", type=Path, help="also dump every sample as JSON here")
    p.add_argument("--list", action="store_true", help="list implementations and scenarios, and exit")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed options.

    Raises:
        ValueError: an unknown implementation or scenario, or nothing selected.
    """
    variants = select(args.impl, args.loop, args.codec)
    if not variants:
        raise ValueError("no implementation matches the filters")
    unknown = [name for name in args.scenario if name not in SCENARIOS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}")
    settings = Settings.quick(variants) if args.quick else Settings(variants=variants)
    if args.scenario:
        settings.scenarios = [SCENARIOS_BY_NAME[name] for name in args.scenario]
    if args.repeats is not None:
        settings.repeats = max(1, args.repeats)
    if args.seconds is not None:
        settings.seconds = args.seconds
    if args.warmup is not None:
        settings.warmup_seconds = args.warmup
    if args.jobs is not None:
        settings.jobs = max(1, args.jobs)
    if args.count_scale is not None:
        settings.count_scale = args.count_scale
    if args.profile is not None:
        settings.profile = args.profile
    if args.profile_scenario is not None:
        if args.profile_scenario not in SCENARIOS_BY_NAME:
            raise ValueError(f"unknown scenario: {args.profile_scenario}")
        settings.profile_scenario = args.profile_scenario
    if args.profile_impl:
        settings.profile_variants = tuple(args.profile_impl)
    if args.profile_seconds is not None:
        settings.profile_seconds = args.profile_seconds
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the results, write them when asked. 1 if an answer was wrong, 2 on bad options."""
    args = parser().parse_args(argv)
    if args.list:
        for variant in VARIANTS:
            print(f"{variant.name:28} {DESCRIPTIONS.get(variant.library, '')}")
        for scenario in SCENARIOS:
            print(f"scenario {scenario.name:12} {scenario.title}")
        return 0
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = run(settings, progress)
    command = reporting.command_line() if argv is None else " ".join(["python -m benchmarks.e2e", *argv])
    section = reporting.markdown(result, command)
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(s) for s in result.samples], indent=1), encoding="utf-8")
    if args.write:
        reporting.write(section, args.output)
        print(f"written to {args.output}", file=sys.stderr)
    return 0 if result.correct else 1
