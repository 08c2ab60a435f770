"""How a process that plans and sends in bulk sets up the interpreter.

CPython's cyclic garbage collector makes a young-generation pass every 700 net container allocations,
and at most every hundredth of those passes walks the whole heap (Prefect, pydantic and the SDKs loaded
make it large). Planning and sending allocate a few small containers per recipient (rows, values, request
bodies), nearly all freed by reference counting at once, so the passes find almost nothing to free. On a
100,000-email `clarion run` they took 3.4-3.9 of its 18-19 CPU seconds (2,900 young passes and 16 of the
whole heap); with the first threshold at YOUNG_THRESHOLD, 0.4-0.7 s (41 and none):
`benchmarks/send_throughput.py --collector`.

Only while the work is bulk (`bulk_work`): code that makes cyclic garbage at a steady pace keeps it until
the next pass, fifty times longer apart. A sharded launch watching its shards reads each shard's flow run
(the batches among its parameters) every second, and each read leaves its copy in reference cycles: with the
raised threshold for the whole process, the launch of a 1,000,000-contact run grew 20 MB a minute while it
watched, to 479 MB against 293 MB (polling alone, 1,150 reads of a flow run with 1,630 batches: 91 MB flat
at 700, 271 MB and growing at 50,000). So the threshold is raised around planning (`scan`) and sending
(a launch's batches in this process, a shard's), and the process collects as usual before and after.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Net container allocations between young-generation passes while work is bulk (CPython's default is 700).
YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_inside = 0  # threads inside bulk_work now
_before = 0  # the young threshold to restore when the last one leaves


@contextmanager
def bulk_work() -> Iterator[None]:
    """Young-generation passes every YOUNG_THRESHOLD allocations while inside, process-wide; threads may
    enter and leave in any order (the first in raises it, the last out restores it). A young threshold of
    0 (automatic collection off on purpose) or already above YOUNG_THRESHOLD is left alone."""
    global _inside, _before
    with _lock:
        if _inside == 0:
            young, middle, old = gc.get_threshold()
            _before = young
            if young and young < YOUNG_THRESHOLD:
                gc.set_threshold(YOUNG_THRESHOLD, middle, old)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                young, middle, old = gc.get_threshold()
                if young == YOUNG_THRESHOLD:  # unless someone set their own meanwhile
                    gc.set_threshold(_before, middle, old)


@contextmanager
def startup_left_out() -> Iterator[None]:
    """While inside, what the process holds already (Prefect, pydantic, the SDKs and Clarion imported,
    the campaign loaded) is left out of the collector's passes (`gc.freeze`), and put back after
    (`gc.unfreeze`): a pass of the old generation then walks only what the run made. On a 100,000-email
    `clarion run` the old generation's passes took 0.33 s of 0.67 s of collection in all
    (`benchmarks/send_throughput.py --collector`), nearly all of it walking start-up's objects, of which a
    launch frees none. A cycle of start-up's that becomes garbage meanwhile waits for the next pass after."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


__all__ = ["YOUNG_THRESHOLD", "before_exit", "bulk_work", "startup_left_out"]
