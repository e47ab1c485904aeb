"""The long fuzz run: `python -m fuzz.run --minutes N`.

Feeds server and client `Connection`s hostile input after a valid handshake (and broken
handshakes), checking every invariant of `fuzz.harness` after each step, until the time is
up. Prints what was tried and what happened; exits 1 if any case broke an invariant.

Engines:

- `hypothesis` (default): round-robin over four targets (server, client, handshake, and
  cases decoded from random bytes), in batches with fresh seeds. A failure is shrunk and
  printed with its falsifying example.
- `atheris`: coverage-guided (libFuzzer) over `fuzz.decode.case_from_bytes`, with
  session_core, wsproto and h11 instrumented. `pip install atheris`, or put it on
  `PYTHONPATH`. A failure stops the run and libFuzzer saves the input (`crash-*`); replay it
  with `python -m fuzz.run --replay FILE`.

Known bugs (`fuzz.harness.KNOWN_BUGS`) are counted apart, not failures, unless `--strict`.

Everything but the standard library is imported lazily: atheris must be the first to
import session_core, wsproto and h11, to instrument them.
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import sys
import time
import traceback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run (default 10)")
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis: the first batch's seed")
    parser.add_argument("--batch", type=int, default=500, help="hypothesis: examples per batch")
    parser.add_argument("--strict", action="store_true", help="known bugs fail the run too")
    parser.add_argument("--replay", metavar="FILE", help="run the case that FILE's bytes decode to")
    parser.add_argument("--corpus", metavar="DIR", help="atheris: the corpus directory to grow")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # handlers fail on purpose: their logs are noise here
    if args.replay:
        return _replay(args.replay, strict=args.strict)
    if args.engine == "atheris":
        return _atheris(args)
    return _hypothesis(args)


# -- hypothesis ------------------------------------------------------------------------


def _hypothesis(args: argparse.Namespace) -> int:
    from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings  # noqa: PLC0415
    from hypothesis import strategies as st  # noqa: PLC0415

    from session_core import Role  # noqa: PLC0415

    from .decode import case_from_bytes  # noqa: PLC0415
    from .harness import STATS, Case, run_case  # noqa: PLC0415
    from .strategies import cases, handshake_cases  # noqa: PLC0415

    targets: dict[str, st.SearchStrategy[Case]] = {
        "server": cases(Role.SERVER),
        "client": cases(Role.CLIENT),
        "handshake": handshake_cases(),
        "bytes": st.binary(max_size=4000).map(case_from_bytes),
    }
    per_target: collections.Counter[str] = collections.Counter()
    failures: dict[str, str] = {}
    rng = random.Random(args.seed)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    next_report = started + 60
    print(f"fuzzing with hypothesis for {args.minutes:g} min ({len(targets)} targets)", flush=True)
    while time.monotonic() < deadline:
        for name, strategy in targets.items():
            if time.monotonic() >= deadline:
                break
            batch_seed = rng.getrandbits(64)

            @seed(batch_seed)
            @settings(
                max_examples=args.batch,
                deadline=None,
                database=None,
                phases=[Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
                report_multiple_bugs=False,
            )
            @given(strategy)
            def target(case: Case) -> None:
                run_case(case, strict=args.strict)

            before = STATS.cases
            try:
                target()
            except Exception as exc:
                key = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                if key not in failures:
                    failures[key] = _describe(exc)
                    print(f"\n!! {name}: {key}\n{failures[key]}", flush=True)
            per_target[name] += STATS.cases - before
            if time.monotonic() >= next_report:
                next_report += 60
                _progress(STATS.cases, started)
    _summary(per_target, started, failures)
    return 1 if failures else 0


def _describe(exc: BaseException) -> str:
    notes = "\n".join(getattr(exc, "__notes__", []))
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-6))
    return f"{notes}\n{trace}"


def _progress(cases: int, started: float) -> None:
    elapsed = time.monotonic() - started
    print(f"  {elapsed / 60:5.1f} min: {cases} cases ({cases / elapsed:.0f}/s)", flush=True)


def _summary(per_target: collections.Counter[str], started: float, failures: dict[str, str]) -> None:
    from .harness import STATS  # noqa: PLC0415

    elapsed = time.monotonic() - started
    print(f"\n{STATS.cases} cases in {elapsed:.0f} s ({STATS.cases / max(elapsed, 1e-9):.0f}/s)")
    for name, count in per_target.items():
        print(f"  {name:10} {count}")
    print(f"peer bytes fed: {STATS.bytes_in}, frames written and checked: {STATS.frames_out}")
    print("handshakes: " + ", ".join(f"{k} {v}" for k, v in STATS.handshakes.most_common()))
    print("close codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(STATS.close_codes.items())))
    print("events: " + ", ".join(f"{k} {v}" for k, v in STATS.events.most_common()))
    if STATS.known_bugs:
        print("known bugs hit (not failures): " + ", ".join(f"{k} x{v}" for k, v in STATS.known_bugs.items()))
    print(f"invariant violations: {len(failures)}")
    for key in failures:
        print(f"  {key}")


# -- atheris ---------------------------------------------------------------------------


def _atheris(args: argparse.Namespace) -> int:
    try:
        import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: PLC0415
    except ImportError:
        print("atheris is not installed: pip install atheris (or use --engine hypothesis)", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["session_core", "wsproto", "h11"]):
        import h11  # noqa: F401, PLC0415
        import wsproto  # noqa: F401, PLC0415

        import session_core  # noqa: F401, PLC0415
    from .decode import case_from_bytes  # noqa: PLC0415
    from .harness import STATS, run_case  # noqa: PLC0415

    started = time.monotonic()
    state = {"next": started + 60.0}

    def one_input(data: bytes) -> None:
        run_case(case_from_bytes(data), strict=args.strict)
        now = time.monotonic()
        if now >= state["next"]:
            state["next"] = now + 60.0
            _progress(STATS.cases, started)
            print("  close codes: " + str(dict(STATS.close_codes)), flush=True)

    libfuzzer = [
        sys.argv[0],
        f"-max_total_time={int(args.minutes * 60)}",
        "-max_len=4096",
        "-print_final_stats=1",
    ]
    if args.corpus:
        libfuzzer.append(args.corpus)
    atheris.Setup(libfuzzer, one_input)
    atheris.Fuzz()  # exits the process when the time is up, or at the first failure
    return 0  # pragma: no cover - atheris.Fuzz does not return


def _replay(path: str, *, strict: bool) -> int:
    from .decode import case_from_bytes  # noqa: PLC0415
    from .harness import run_case  # noqa: PLC0415

    with open(path, "rb") as file:
        case = case_from_bytes(file.read())
    print(case)
    run_case(case, strict=strict)
    print("no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
