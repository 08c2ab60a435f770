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


def before_exit() -> None:
    """Keep the collector's last pass at exit from walking every object of the process.

    At exit the interpreter collects every generation once more before it tears the modules down: after
    a 100,000-email `clarion run`, 0.9-1.7 s between the command's last output and the process's end;
    0.06-0.11 s with the heap frozen first (`gc.freeze`: what exists is left out of collections). Nothing
    is lost by it: the ledger's transactions were committed before the command returned, `atexit`
    handlers (logging's flush, Prefect's event and log workers, the ledger's engines closing their
    connections: clarion.ledger.database) run before that pass, and the standard streams are flushed apart
    from it. Objects in unreachable cycles are freed with the process, their finalizers not run: what must
    happen at exit is an `atexit` handler, never a finalizer."""
    gc.freeze()


__all__ = ["YOUNG_THRESHOLD", "before_exit", "for_bulk_work"]
