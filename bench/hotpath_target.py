"""The router, with profilers that the benchmark switches on and off by signal.

``python bench/hotpath_target.py OUT_DIR SESSION_DIR -- <mcp-router arguments>``

- SIGUSR1: first one starts pyinstrument (statistical, every 0.5 ms of wall time, or of the
  main thread's CPU time with ``BENCH_PROFILE_CLOCK=cpu``); the second stops it and writes
  ``OUT_DIR/pyinstrument.txt`` (call tree) and ``SESSION_DIR/pyinstrument.session`` (raw
  samples, large).
- SIGUSR2: first one starts cProfile; the second stops it and writes ``OUT_DIR/cprofile.pstats``.

- SIGWINCH: no profiler; first one starts timing the garbage collector (``gc.callbacks``) and
  the process's CPU (with ``BENCH_GC_FREEZE=1``, after ``gc.collect(); gc.freeze()``, to
  measure what freezing the start-up heap would save; with ``BENCH_GC_THRESHOLD=a,b,c``, after
  ``gc.set_threshold(a, b, c)``); the second writes ``OUT_DIR/gc.json``.

Start-up and discovery are never profiled: the driver signals only around its measured calls.
Everything else is the unchanged ``mcp-router`` entry point.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

_state: dict[str, Any] = {}


def _toggle_pyinstrument(_signum: int, _frame: Any) -> None:
    from pyinstrument import Profiler

    out: Path = _state["out"]
    profiler = _state.pop("pyinstrument", None)
    if profiler is None:
        from pyinstrument.stack_sampler import get_stack_sampler

        if os.environ.get("BENCH_PROFILE_CLOCK") == "cpu":
            # Sample on the thread's CPU clock: time spent blocked (epoll, or preempted by
            # other processes on a busy machine) is not attributed to anything.
            get_stack_sampler().timer_func = time.thread_time
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        _state["pyinstrument"] = profiler
        profiler.start()
        return
    session = profiler.stop()
    (out / "pyinstrument.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False)
    )
    session.save(str(_state["session_dir"] / "pyinstrument.session"))
    (out / "pyinstrument.done").touch()


def _toggle_cprofile(_signum: int, _frame: Any) -> None:
    out: Path = _state["out"]
    profiler = _state.pop("cprofile", None)
    if profiler is None:
        profiler = cProfile.Profile()
        _state["cprofile"] = profiler
        profiler.enable()
        return
    profiler.disable()
    profiler.dump_stats(str(out / "cprofile.pstats"))
    (out / "cprofile.done").touch()


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    stats = _state["gc"]
    if phase == "start":
        stats["_t0"] = time.perf_counter()
    else:
        gen = str(info.get("generation", "?"))
        count, seconds = stats.get(gen, (0, 0.0))
        stats[gen] = (
            count + 1,
            seconds + time.perf_counter() - stats.pop("_t0", time.perf_counter()),
        )


def _toggle_gc_timing(_signum: int, _frame: Any) -> None:
    """No profiler: time the garbage collector, and the process's CPU, over the window."""
    out: Path = _state["out"]
    if "gc" not in _state:
        if os.environ.get("BENCH_GC_FREEZE") == "1":
            gc.collect()
            gc.freeze()  # experiment: what `gc.freeze()` after start-up would save
        if os.environ.get("BENCH_GC_THRESHOLD"):
            # experiment: other collector thresholds, e.g. "10000,10,100"
            gc.set_threshold(*(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(",")))
        _state["gc"] = {}
        _state["gc_cpu0"] = time.process_time()
        gc.callbacks.append(_gc_callback)
        return
    gc.callbacks.remove(_gc_callback)
    stats = _state.pop("gc")
    stats.pop("_t0", None)
    result = {
        "cpu_seconds": time.process_time() - _state.pop("gc_cpu0"),
        "collections": {gen: {"count": c, "seconds": t} for gen, (c, t) in stats.items()},
        "thresholds": gc.get_threshold(),
        "objects": len(gc.get_objects()),
    }
    (out / "gc.json").write_text(json.dumps(result, indent=2))
    (out / "gc.done").touch()


def main() -> None:
    """Install the signal handlers, then run the router's own entry point."""
    args = sys.argv[1:]
    if "--" not in args:
        raise SystemExit("usage: hotpath_target.py OUT_DIR SESSION_DIR -- <router arguments>")
    split = args.index("--")
    _state["out"] = Path(args[0])
    _state["session_dir"] = Path(args[1])
    signal.signal(signal.SIGUSR1, _toggle_pyinstrument)
    signal.signal(signal.SIGUSR2, _toggle_cprofile)
    signal.signal(signal.SIGWINCH, _toggle_gc_timing)
    from mcp_router.cli import router_main

    router_main(args[split + 1 :])


if __name__ == "__main__":
    main()
