"""How a process that plans and sends in bulk sets up the interpreter.

CPython's cyclic garbage collector makes a young-generation pass every 700 net container allocations,
and at most every hundredth of those passes walks the whole heap (Prefect, pydantic and the SDKs loaded
make it large). Planning and sending allocate a few small containers per recipient (rows, values, request
bodies), nearly all freed by reference counting at once, so the passes find almost nothing to free. On a
100,000-email `clarion run` they took 3.4-3.9 of its 18-19 CPU seconds (2,900 young passes and 16 of the
whole heap); with the first threshold at YOUNG_THRESHOLD, 0.4-0.7 s (41 and none):
`benchmarks/send_throughput.py --collector`. Cycles are still collected, in fewer, larger passes; the
older generations keep their thresholds.
"""

from __future__ import annotations

import gc

#: Net container allocations between young-generation passes (CPython's default is 700).
YOUNG_THRESHOLD = 50_000


def for_bulk_work() -> None:
    """Collect young objects every YOUNG_THRESHOLD allocations, not 700; idempotent, process-wide."""
    young, middle, old = gc.get_threshold()
    if young and young < YOUNG_THRESHOLD:  # 0: the collector was turned off on purpose; leave it
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)


__all__ = ["YOUNG_THRESHOLD", "for_bulk_work"]
