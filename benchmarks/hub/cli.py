"""The command line: `python -m benchmarks.hub [options]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import report as reporting
from .common import STACKS
from .runner import SCENARIOS, TITLES, Settings, run


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _sizes(text: str) -> list[int]:
    return [int(part) for part in _names(text)]


def parser() -> argparse.ArgumentParser:
    """The options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.hub",
        description=(
            "Fan-out across two server processes over one temporary redis-server: session_hub "
            "(session_asyncio) against python-socketio with AsyncRedisManager, side by side in "
            "one run. The default run takes about 2-3 minutes."
        ),
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 8 clients, 0.3 s per cell, 256 B only")
    p.add_argument("--stack", type=_names, default=[], help=f"stacks, comma-separated: {', '.join(STACKS)}")
    p.add_argument("--scenario", type=_names, default=[], help=f"scenarios: {', '.join(SCENARIOS)}")
    p.add_argument("--payload", type=_sizes, default=[], help="payload sizes in bytes (default 256,4096)")
    p.add_argument("--clients", type=int, help="clients, half on each server process (default 100)")
    p.add_argument("--seconds", type=float, help="measured seconds per cell (default 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per cell (default 0.5)")
    p.add_argument("--window", type=int, help="deliveries in flight at most (default 2000)")
    p.add_argument(
        "--loop", choices=["uvloop", "asyncio"], help="event loop of every process (default uvloop)"
    )
    p.add_argument("--redis-server", help="the redis-server executable (default: found on PATH)")
    p.add_argument("--write", action="store_true", help="write the results into benchmarks/HUB-RESULTS.md")
    p.add_argument("--output", type=Path, default=reporting.RESULTS_FILE, help="the file --write writes")
    p.add_argument("--json", type=Path, help="also dump every result as JSON here")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed options.

    Raises:
        ValueError: an unknown stack or scenario, or a count out of range.
    """
    settings = Settings.quick() if args.quick else Settings()
    for name in args.stack:
        if name not in STACKS:
            raise ValueError(f"unknown stack: {name}")
    for name in args.scenario:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario: {name}")
    if args.stack:
        settings.stacks = args.stack
    if args.scenario:
        settings.scenarios = args.scenario
    if args.payload:
        settings.payloads = args.payload
    for name in ("clients", "seconds", "warmup", "window", "loop", "redis_server"):
        value = getattr(args, name)
        if value is not None:
            setattr(settings, name, value)
    if settings.clients < 4 or settings.clients > 2000:
        raise ValueError("--clients must be between 4 and 2000")
    if not 0 < settings.seconds <= 60 or not 0 <= settings.warmup <= 10:
        raise ValueError("--seconds must be in (0, 60], --warmup in [0, 10]")
    if not all(0 < size <= 65536 for size in settings.payloads):
        raise ValueError("payload sizes must be in (0, 65536]")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the results, write them when asked. 1 if a cell failed, 2 on bad options."""
    args = parser().parse_args(argv)
    if args.list:
        for name in SCENARIOS:
            print(f"{name:12} {TITLES[name]}")
        return 0
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run(settings, lambda line: print(line, file=sys.stderr, flush=True))
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = reporting.command_line(None if argv is None else list(argv))
    section = reporting.markdown(result, command)
    print(section)
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in result.results], indent=1), encoding="utf-8")
    if args.write:
        reporting.write(section, args.output)
        print(f"written to {args.output}", file=sys.stderr)
    return 1 if any(r.error for r in result.results) else 0
