"""Process-wide tuning for Runboard's long-running processes (the web server, the bridges)."""

from __future__ import annotations

import gc


def freeze_imported_objects() -> int:
    """Leave everything alive now (modules, classes, URL patterns) out of the cyclic GC.

    A full collection walks every tracked object. In the web process that is about
    100,000 objects from the imports alone, and under load a full collection came
    every few seconds and held the GIL for 60-100 ms: the loop, ingest and the
    render thread all stood still, and those pauses were the live console's worst
    latencies. Frozen objects are still freed by reference counting; only cycles
    among them are never collected, and they live as long as the process anyway.
    Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
