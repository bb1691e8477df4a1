"""What the scheduler for LLM calls costs under contention.

    .venv/bin/python -m bench.scheduler_overhead [--programs 1000] [--calls 20] [--limit 4] [--rounds 5]

1,000 programs (a tenth interactive, the rest normal or background) each make `--calls` calls
through `Router.run` to one deployment of concurrency 4 whose backend answers at once (one
loop turn), so nearly every call queues. Printed, for each policy:

- the scheduler's own work per queued call: the time inside `WaitQueue.push` (queue a call)
  and `WaitQueue.hand_over` (charge the finished call to its program, pick the next waiter,
  hand it the slot), p50 and p99 over every call of the run;
- the whole run's cost per call (the process's CPU time / calls), next to the same run through
  the FIFO of futures the deployment had before the scheduler, the two run in turns; the
  median over `--rounds` pairs of the difference is the scheduler's overhead per call, all of
  it (contextvar, holds, indices, and what the order of service does to the event loop's work).

The uncontended path (a free slot, nobody waiting) does not reach the scheduler at all:
`python -m bench.socket_bench` ("router.run overhead") measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from types import SimpleNamespace
from typing import Any

from app.kernel.canonical import ModelSpec
from app.kernel.errors import OverloadedError
from app.kernel.events import EventBus
from app.kernel.scheduler import Policy, Program, ProgramClass, Scheduler, WaitQueue, run_as
from app.kernel.socket.router import Deployment, RoutePlan, Router, RouterPolicy
from bench._util import percentile

_CLASSES = [ProgramClass.INTERACTIVE] + [ProgramClass.NORMAL] * 5 + [ProgramClass.BACKGROUND] * 4


class FifoDeployment(Deployment):
    """The deployment's queue before the scheduler (a FIFO of futures), for comparison."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._waiters: asyncio.Queue[asyncio.Future[None]] | None = None

    async def acquire(self) -> None:  # type: ignore[override]
        if self.try_acquire():
            return
        if self.waiting >= self.max_queue:
            raise OverloadedError("busy")
        if self._waiters is None:
            self._waiters = asyncio.Queue()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.put_nowait(fut)
        self.waiting += 1
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()
            raise
        finally:
            self.waiting -= 1

    def release(self, hold: Any = None) -> None:
        while self._waiters is not None and not self._waiters.empty():
            fut = self._waiters.get_nowait()
            if not fut.done():
                fut.set_result(None)
                return
        self.in_flight -= 1


class Timed(WaitQueue):
    """A wait queue that times its own two operations."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.push_us: list[float] = []
        self.hand_over_us: list[float] = []

    def push(self, program: Program | None = None) -> Any:
        t0 = time.perf_counter()
        w = super().push(program)
        self.push_us.append((time.perf_counter() - t0) * 1e6)
        return w

    def hand_over(self, hold: Any, now: float | None = None) -> bool:
        t0 = time.perf_counter()
        handed = super().hand_over(hold, now)
        self.hand_over_us.append((time.perf_counter() - t0) * 1e6)
        return handed


def setup(policy: str | None, limit: int, timed: bool) -> tuple[Router, RoutePlan, Deployment]:
    driver = SimpleNamespace(manages_memory=False, preemptible=False)
    router = Router(lambda _p: driver, EventBus(), RouterPolicy(max_queue=1_000_000),
                    scheduler=Scheduler(policy or "fifo"))
    spec = ModelSpec(id="bench/m", name="m", provider="bench")
    if policy is None:
        dep: Deployment = FifoDeployment(spec, driver, router.policy, router.scheduler)  # type: ignore[arg-type]
        router._deployments[spec.id] = dep
    else:
        dep = router.deployment(spec)
        if timed:
            dep.wait_queue = Timed(router.scheduler)
    dep.limit = limit
    return router, RoutePlan(tiers=[[spec]], key="bench"), dep


async def answer(_dep: Deployment) -> None:
    await asyncio.sleep(0)  # the backend answers at once: one loop turn


async def run(policy: str | None, programs: int, calls: int, limit: int, timed: bool = False
              ) -> tuple[float, Deployment]:
    router, plan, dep = setup(policy, limit, timed)

    async def program(n: int) -> None:
        with run_as(Program(f"program-{n}", _CLASSES[n % len(_CLASSES)])):
            for _ in range(calls):
                await router.run(plan, answer)

    gc.collect()
    t0 = time.process_time()  # CPU time: other processes on the machine count less than in wall time
    await asyncio.gather(*(program(n) for n in range(programs)))
    took = time.process_time() - t0
    assert dep.in_flight == 0 and dep.waiting == 0
    return took, dep


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=20, help="calls per program")
    ap.add_argument("--limit", type=int, default=4, help="the deployment's concurrency")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    total = args.programs * args.calls
    print(f"{args.programs} programs x {args.calls} calls = {total} calls, concurrency {args.limit}, "
          f"backend answering at once; medians of {args.rounds} rounds\n")

    await run(None, 100, 5, args.limit)  # warm up
    print(f"{'policy':<12} {'queued':>6} {'push p50/p99 µs':>17} {'hand-over p50/p99 µs':>22} "
          f"{'CPU µs/call':>12} {'FIFO before':>12} {'overhead µs/call':>17}")
    for policy in Policy:
        _, dep = await run(policy.value, args.programs, args.calls, args.limit, timed=True)
        q = dep.wait_queue
        assert isinstance(q, Timed)
        ours, before = [], []
        for _ in range(args.rounds):
            before.append((await run(None, args.programs, args.calls, args.limit))[0] / total * 1e6)
            ours.append((await run(policy.value, args.programs, args.calls, args.limit))[0] / total * 1e6)
        extra = statistics.median(a - b for a, b in zip(ours, before, strict=True))
        print(f"{policy.value:<12} {len(q.push_us) / total:6.0%} "
              f"{percentile(q.push_us, 50):7.2f} / {percentile(q.push_us, 99):6.2f}  "
              f"{percentile(q.hand_over_us, 50):9.2f} / {percentile(q.hand_over_us, 99):6.2f}   "
              f"{statistics.median(ours):11.2f} {statistics.median(before):12.2f} {extra:+17.2f}")


if __name__ == "__main__":
    asyncio.run(main())
