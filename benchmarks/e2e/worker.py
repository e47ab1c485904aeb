"""The server and client processes of the benchmark (started by `benchmarks.e2e.runner`).

    python -m benchmarks.e2e.worker server VARIANT_JSON [--profile PATH]
    python -m benchmarks.e2e.worker client VARIANT_JSON PORT CONTROL_PORT PLANS_JSON [--profile PATH]

Each prints JSON lines on stdout: the server one line, `{"port": ..., "control": ...}` once
it listens (or `{"error": ...}` if it cannot serve); the client one `Sample` per plan.
Both watch their stdin: when it reaches its end (the runner closed it, or the runner died)
the server shuts down and the client exits at once, so no process outlives the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import importlib
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

from ..builds import current_build
from .common import CODECS, Codec
from .control import ControlClient, ControlServer, Profiling
from .load import Meter, run_asyncio, run_trio
from .results import Plan, Sample
from .variants import PeerModule, Variant

SHUTDOWN_GRACE = 10.0
"Seconds a server gets to shut down once asked before it exits regardless."


def emit(obj: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def describe(exc: BaseException) -> str:
    """`Type: message`, short, with the innermost cause of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:300]


def watch_stdin(on_end: Callable[[], None]) -> None:
    """Call `on_end` (in a daemon thread) once stdin reaches its end."""

    def watch() -> None:
        # os.read on the descriptor: a thread blocked in sys.stdin's buffered reader would
        # hold its lock and make the interpreter abort at exit.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        on_end()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def exit_later(seconds: float, code: int) -> None:
    """Exit the process after `seconds`, whatever the main thread does."""
    timer = threading.Timer(seconds, os._exit, args=(code,))
    timer.daemon = True
    timer.start()


def load_peer(variant: Variant) -> tuple[PeerModule, Codec]:
    """Import the variant's peer module (and uvloop when it runs on it)."""
    if variant.loop == "uvloop":
        importlib.import_module("uvloop")
    module = importlib.import_module(variant.module_path)
    return cast(PeerModule, module), CODECS[variant.codec]


def run_on(variant: Variant, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main()` on the variant's event loop."""
    if variant.loop == "trio":
        import trio  # noqa: PLC0415 - asyncio variants need not import it

        trio.run(main)
        return
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if variant.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only uvloop variants need it

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def build_of(variant: Variant) -> str | None:
    """For session-py's own variants, what this process runs: its build and its masking."""
    return current_build() if variant.ours else None


# -- server ----------------------------------------------------------------------------------


def serve(variant: Variant, profile: Path | None) -> int:
    """Serve until stdin ends. Returns the exit code."""
    try:
        peer, codec = load_peer(variant)
    except Exception as exc:
        emit({"error": f"cannot import: {describe(exc)}"})
        return 1
    try:
        build = build_of(variant)
    except Exception as exc:
        emit({"error": f"cannot import: {describe(exc)}"})
        return 1
    control = ControlServer(profile)
    ready = False

    async def main_asyncio() -> None:
        nonlocal ready
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def call_in_loop(function: Callable[[], None]) -> None:
            done: concurrent.futures.Future[None] = concurrent.futures.Future()

            def run() -> None:
                try:
                    function()
                    done.set_result(None)
                except BaseException as exc:
                    done.set_exception(exc)

            loop.call_soon_threadsafe(run)
            done.result(timeout=60)

        def on_end() -> None:
            loop.call_soon_threadsafe(stop.set)

        control.bind(call_in_loop)
        watch_stdin(on_end)
        async with peer.serve(codec) as port:
            emit({"port": port, "control": control.port, "pid": os.getpid(), "build": build})
            ready = True
            await stop.wait()
            exit_later(SHUTDOWN_GRACE, 3)

    async def main_trio() -> None:
        import trio  # noqa: PLC0415 - asyncio variants need not import it

        nonlocal ready
        token = trio.lowlevel.current_trio_token()
        stop = trio.Event()

        def call_in_loop(function: Callable[[], None]) -> None:
            trio.from_thread.run_sync(function, trio_token=token)

        def on_end() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)

        control.bind(call_in_loop)
        watch_stdin(on_end)
        async with peer.serve(codec) as port:
            emit({"port": port, "control": control.port, "pid": os.getpid(), "build": build})
            ready = True
            await stop.wait()
            exit_later(SHUTDOWN_GRACE, 3)

    try:
        run_on(variant, main_trio if variant.loop == "trio" else main_asyncio)
    except BaseException as exc:
        if not ready:
            emit({"error": f"cannot serve: {describe(exc)}"})
        traceback.print_exc()
        return 1
    finally:
        control.close()
    return 0


# -- client ----------------------------------------------------------------------------------


def client(variant: Variant, port: int, control_port: int, plans: list[Plan], profile: Path | None) -> int:
    """Run the plans against the server at `port`, printing one `Sample` per plan."""
    watch_stdin(lambda: os._exit(4))
    try:
        peer, codec = load_peer(variant)
    except Exception as exc:
        for plan in plans:
            emit(Sample(variant.name, plan.scenario, error=f"cannot import: {describe(exc)}").to_json())
        return 1
    try:
        control: ControlClient | None = ControlClient(control_port)
    except OSError:
        control = None
    meter = Meter(control, Profiling(profile) if profile is not None else None)
    runner = run_trio if variant.loop == "trio" else run_asyncio

    async def main() -> None:
        for plan in plans:
            try:
                sample = await runner(variant.name, peer, codec, port, plan, meter)
            except Exception as exc:
                traceback.print_exc()
                timed_out = type(exc).__name__ in ("TimeoutError", "TooSlowError")
                reason = f"timed out after {plan.timeout:g} s" if timed_out else describe(exc)
                sample = Sample(variant.name, plan.scenario, error=reason)
            emit(sample.to_json())

    try:
        run_on(variant, main)
    except BaseException as exc:
        traceback.print_exc()
        emit({"fatal": describe(exc)})
        return 1
    finally:
        if control is not None:
            control.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """The worker's command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e.worker")
    sub = parser.add_subparsers(dest="role", required=True)
    server_args = sub.add_parser("server")
    server_args.add_argument("variant")
    server_args.add_argument("--profile", type=Path)
    client_args = sub.add_parser("client")
    client_args.add_argument("variant")
    client_args.add_argument("port", type=int)
    client_args.add_argument("control", type=int)
    client_args.add_argument("plans")
    client_args.add_argument("--profile", type=Path)
    args = parser.parse_args(argv)
    variant = Variant.from_json(json.loads(args.variant))
    if args.role == "server":
        return serve(variant, args.profile)
    plans = [Plan.from_json(p) for p in json.loads(args.plans)]
    return client(variant, args.port, args.control, plans, args.profile)


if __name__ == "__main__":
    sys.exit(main())
