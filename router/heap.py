"""The garbage collector of a long-running service process.

At start-up a process builds a heap that lives as long as it does: modules, compiled rules, tenants,
the pydantic validators. CPython's cyclic collector walks all of it on every full collection — about
130,000 objects, 40–70 ms with the loop stopped, roughly once a second under load (measured with
`gc.callbacks` at 500 contacts/s; see docs/performance.md). Those pauses were the router's p99.

`settle()` collects once and moves what survived into the permanent generation (`gc.freeze`), so later
collections walk only what was made since; and it lets the young generation grow before it is walked,
because a busy router allocates a contact's objects faster than the default threshold of 700 lets them
die by reference counting. Cycles are still collected; only the start-up heap is left out.
"""

from __future__ import annotations

import gc

from router import logs

log = logs.get("router.heap")

# Young objects allowed before the first generation is walked (CPython's default is 700). Every walk
# costs about the size of what is alive and young — the batches in flight — not what has died, so
# fewer walks cost less in all; 50,000 small objects are a few MB.
YOUNG_THRESHOLD = 50_000


def settle() -> int:
    """Freeze the start-up heap; returns how many objects it holds. Call once, when the process has
    loaded what it keeps (rules, tenants, connections) and before it takes work."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    frozen = gc.get_freeze_count()
    log.info("heap_settled", frozen_objects=frozen, young_threshold=YOUNG_THRESHOLD)
    return frozen
