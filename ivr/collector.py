"""The cyclic garbage collector, run on a clock instead of on allocation counts.

CPython starts a young collection once tracked allocations exceed deallocations by 700. Every
deallocation counts, an old object's too. A controller's per-call objects (coroutine frames,
futures, the call's state) live while a prompt plays and then die. With calls in flight,
allocations and deaths balance, so the count hardly moves while the young generation keeps
growing. Measured with 1000 calls in flight (bench/agi_engine.py, paced): "young" collections
found up to 34,000 objects and stopped the event loop for 20-35 ms, several times a second, and
every caller's next command waited meanwhile.

Reference counting frees almost everything a call leaves; the collector is only needed for
cycles. So automatic collection is off, and a full collection runs once every ``every`` seconds
(30-60 ms with 1000 calls in flight, about 160 ms with 5000: one pause a minute instead of
several a second), or sooner once the tracked objects grew by ``growth_limit`` since the last one
(a burst of cycles must not wait a minute). Young collections on a short clock were measured
too: each of them scans what the calls allocated since the last tick and still hold, so the
share of time paused stays the same and the per-command p99 did not improve.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

# A collection this long means a heap far larger than calls in flight explain: worth a line in the log.
SLOW_COLLECTION_SECONDS = 0.25


class ClockedCollector:
    """Owns the collector while ``run()`` runs: automatic collection off, full collections on a clock."""

    def __init__(self, every: float = 60.0, *, check_every: float = 1.0, growth_limit: int = 200_000) -> None:
        if not 0 < check_every <= every or growth_limit < 1:
            raise ValueError("need 0 < check_every <= every and a positive growth limit")
        self.every = every
        self.check_every = check_every
        self.growth_limit = growth_limit
        self.collections = 0
        self.longest_pause = 0.0  # seconds
        self.found = 0  # unreachable objects freed, in all

    def due(self, since_last: float, growth: int) -> bool:
        """Whether to collect now, ``since_last`` seconds after the last collection, the tracked
        objects having grown by ``growth`` meanwhile."""
        return since_last >= self.every or growth >= self.growth_limit

    def collect(self) -> int:
        started = time.perf_counter()
        found = gc.collect()
        pause = time.perf_counter() - started
        self.collections += 1
        self.found += found
        self.longest_pause = max(self.longest_pause, pause)
        if pause > SLOW_COLLECTION_SECONDS:
            log.warning("a garbage collection took %.0f ms (%d unreachable objects)", 1000 * pause, found)
        return found

    async def run(self) -> None:
        was_enabled = gc.isenabled()
        gc.disable()
        clock = asyncio.get_running_loop().time
        try:
            last = clock()
            while True:
                await asyncio.sleep(self.check_every)
                # With automatic collection off, generation 0's count is the tracked objects'
                # net growth since the last collection.
                if self.due(clock() - last, gc.get_count()[0]):
                    self.collect()
                    last = clock()
        finally:
            if was_enabled:
                gc.enable()
