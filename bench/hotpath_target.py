"""The router, with profilers that the benchmark switches on and off by signal.

``python bench/hotpath_target.py OUT_DIR SESSION_DIR -- <mcp-router arguments>``

- SIGUSR1: first one starts pyinstrument (statistical, every 0.5 ms of the main thread's CPU
  time); the second stops it and writes ``OUT_DIR/pyinstrument.txt`` (call tree) and
  ``SESSION_DIR/pyinstrument.session`` (raw samples, large).
- SIGUSR2: first one starts cProfile; the second stops it and writes ``OUT_DIR/cprofile.pstats``.

Start-up and discovery are never profiled: the driver signals only around its measured calls.
Everything else is the unchanged ``mcp-router`` entry point.
"""

from __future__ import annotations

import cProfile
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

        # Sample on the thread's CPU clock: time spent blocked (epoll, or preempted by other
        # processes on a busy machine) is not attributed to anything.
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
    from mcp_router.cli import router_main

    router_main(args[split + 1 :])


if __name__ == "__main__":
    main()
