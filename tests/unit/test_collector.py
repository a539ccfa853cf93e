"""The clocked garbage collector (ivr/collector.py): when it collects, that cycles are still freed,
and that it hands the collector back as it found it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from ivr.collector import ClockedCollector


@pytest.fixture(autouse=True)
def collector_state_kept() -> Iterator[None]:
    """These tests switch automatic collection on and off; what the session had is put back (a
    running hotline, started by the e2e tests of the same session, has it off)."""
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a  # reference counting alone never frees these two
    return a


def test_it_collects_on_the_clock_or_after_growth() -> None:
    collector = ClockedCollector(60.0, growth_limit=1000)
    assert not collector.due(59.0, 999)
    assert collector.due(60.0, 0)
    assert collector.due(1.0, 1000)


def test_a_schedule_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError):
        ClockedCollector(0.5, check_every=1.0)
    with pytest.raises(ValueError):
        ClockedCollector(60.0, growth_limit=0)


def test_the_growth_it_reads_is_the_tracked_objects_made_since_the_last_collection() -> None:
    gc.disable()
    gc.collect()
    kept = [cycle() for _ in range(1000)]
    assert gc.get_count()[0] >= 2000
    del kept


async def test_automatic_collection_is_off_while_it_runs_and_cycles_are_freed_on_the_clock() -> None:
    gc.enable()
    collector = ClockedCollector(0.05, check_every=0.01)
    task = asyncio.create_task(collector.run())
    await asyncio.sleep(0)
    assert not gc.isenabled()
    gone = asyncio.Event()
    weakref.finalize(cycle(), gone.set)
    await asyncio.wait_for(gone.wait(), 2.0)
    assert collector.collections >= 1 and collector.found >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gc.isenabled()


async def test_growth_brings_the_collection_forward() -> None:
    collector = ClockedCollector(3600.0, check_every=0.01, growth_limit=5000)
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.sleep(0.02)
        gone = asyncio.Event()
        weakref.finalize(cycle(), gone.set)
        garbage = [cycle() for _ in range(5000)]
        del garbage
        await asyncio.wait_for(gone.wait(), 2.0)  # long before the hour
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_it_leaves_the_collector_off_when_it_found_it_off() -> None:
    gc.disable()
    task = asyncio.create_task(ClockedCollector(0.05, check_every=0.01).run())
    await asyncio.sleep(0.03)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not gc.isenabled()
