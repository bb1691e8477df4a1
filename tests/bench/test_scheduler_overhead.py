"""bench.scheduler_overhead on a small run: every policy and the FIFO it is compared with finish
every call with no slot left taken, and the timed queue sees the calls that queued."""

from __future__ import annotations

import pytest

from bench.scheduler_overhead import FifoDeployment, Timed, run


@pytest.mark.parametrize("policy", ["fifo", "round_robin", "priority", "las"])
async def test_a_small_contended_run_queues_and_leaks_nothing(policy):
    took, dep = await run(policy, programs=50, calls=3, limit=2, timed=True)
    assert took > 0 and dep.in_flight == 0 and dep.waiting == 0
    assert isinstance(dep.wait_queue, Timed) and len(dep.wait_queue.push_us) > 100  # nearly every call queued
    assert len(dep.wait_queue.hand_over_us) >= len(dep.wait_queue.push_us)


async def test_the_fifo_it_is_compared_with_runs_too():
    _, dep = await run(None, programs=50, calls=3, limit=2)
    assert isinstance(dep, FifoDeployment) and dep.in_flight == 0
