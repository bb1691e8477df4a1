"""The start-up heap freeze the daemon and the desktop app do once they have settled."""

from __future__ import annotations

import asyncio
import gc

from app.kernel import heap


def test_freeze_moves_what_is_alive_out_of_the_collectors_generations():
    try:
        kept = [[i] for i in range(1000)]  # container objects: tracked by the collector
        frozen = heap.freeze_startup_heap()
        assert frozen >= 1000 and gc.get_freeze_count() == frozen
        assert all(not any(o is x for o in gc.get_objects()) for x in kept[:3])  # no longer scanned
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual


async def test_the_freeze_is_scheduled_and_can_be_called_off():
    loop = asyncio.get_running_loop()
    handle = heap.freeze_when_settled(loop, delay=3600)
    assert not handle.cancelled() and handle.when() > loop.time() + 3500
    handle.cancel()
    assert gc.get_freeze_count() == 0
