"""`clarion ARGS...` with CPython's garbage collector timed: how many passes of each generation it made and
the seconds they took, printed to stderr at exit (what `send_throughput.py --collector` reads).

    .venv/bin/python benchmarks/collector.py run campaign.yaml --json
"""

from __future__ import annotations

import atexit
import gc
import runpy
import sys
import time

passes = [0, 0, 0]
seconds = [0.0, 0.0, 0.0]
_began = [0.0]


def _timed(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _began[0] = time.perf_counter()
        return
    generation = info["generation"]
    passes[generation] += 1
    seconds[generation] += time.perf_counter() - _began[0]


@atexit.register
def _report() -> None:
    shown = ", ".join(f"{s:.2f}" for s in seconds)
    print(
        f"collector: passes by generation {passes}, seconds {shown}, {sum(seconds):.2f} s in all, "
        f"of {time.process_time():.2f} CPU s",
        file=sys.stderr,
    )


gc.callbacks.append(_timed)
sys.argv = ["clarion", *sys.argv[1:]]
runpy.run_module("clarion", run_name="__main__", alter_sys=True)
