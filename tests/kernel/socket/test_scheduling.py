"""The router's deployments through the scheduler: calls wait in its order, slots never leak
(cancellation at every point), attained service is charged, and the preemption hook."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from app.kernel.canonical import ModelSpec
from app.kernel.events import EventBus
from app.kernel.scheduler import Program, ProgramClass, Scheduler, current_hold, run_as
from app.kernel.socket.router import RoutePlan, Router
from tests.kernel.scheduler.conftest import Clock


class Gate:
    """An upstream call that waits until the test lets it finish."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.open: dict[str, asyncio.Event] = {}
        self.arrived = asyncio.Event()

    async def call(self, name: str) -> str:
        self.started.append(name)
        self.arrived.set()
        await self.open.setdefault(name, asyncio.Event()).wait()
        return name

    def finish(self, name: str) -> None:
        self.open.setdefault(name, asyncio.Event()).set()

    async def wait_started(self, count: int) -> None:
        while len(self.started) < count:
            self.arrived.clear()
            await self.arrived.wait()


def router(limit: int = 1, policy: str = "las", clock: Clock | None = None, preemptible: bool = False):
    driver = SimpleNamespace(manages_memory=False, preemptible=preemptible)
    r = Router(lambda _p: driver, EventBus(), scheduler=Scheduler(policy, clock=clock or Clock()))
    spec = ModelSpec(id="p/m", name="m", provider="p")
    dep = r.deployment(spec)
    dep.limit = limit
    return r, RoutePlan(tiers=[[spec]], key="t"), dep


async def queued(dep, count: int) -> None:
    """Until `count` calls wait for the deployment (each parks on its first loop turn: no I/O before)."""
    for _ in range(100):
        if dep.waiting >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{dep.waiting} waiting, expected {count}")


async def test_an_interactive_call_overtakes_queued_background_ones():
    r, plan, dep = router(limit=1)
    gate = Gate()

    async def call(name: str, cls: str) -> str:
        with run_as(Program(name, ProgramClass(cls))):
            return (await r.run(plan, lambda _d: gate.call(name)))[0]

    tasks = [asyncio.create_task(call("first", "background"))]
    await gate.wait_started(1)
    for name, cls in [("bg1", "background"), ("bg2", "background"), ("popup", "interactive")]:
        tasks.append(asyncio.create_task(call(name, cls)))
        await queued(dep, len(tasks) - 1)
    for n, name in enumerate(["first", "popup", "bg1", "bg2"]):
        await gate.wait_started(n + 1)
        assert gate.started[n] == name
        gate.finish(name)
    assert await asyncio.gather(*tasks) == ["first", "bg1", "bg2", "popup"]
    assert dep.in_flight == 0 and dep.waiting == 0


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on():
    _r, _plan, dep = router(limit=1)
    holder = await dep.acquire()  # the slot is taken; the uncontended path has no hold
    assert holder is None and dep.in_flight == 1
    first = asyncio.create_task(dep.acquire())
    second = asyncio.create_task(dep.acquire())
    await queued(dep, 2)
    dep.release(holder)  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    hold = await second  # the slot went on to the next waiter
    assert hold is not None and dep.in_flight == 1
    dep.release(hold)
    assert dep.in_flight == 0 and dep.waiting == 0


async def test_the_last_waiter_cancelled_as_it_is_handed_the_slot_frees_it():
    _r, _plan, dep = router(limit=1)
    holder = await dep.acquire()
    waiter = asyncio.create_task(dep.acquire())
    await queued(dep, 1)
    dep.release(holder)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert dep.in_flight == 0 and dep.waiting == 0
    assert dep.try_acquire()  # the slot is free again


async def test_a_waiter_cancelled_while_waiting_leaves_no_trace():
    _r, _plan, dep = router(limit=1)
    holder = await dep.acquire()
    waiters = [asyncio.create_task(dep.acquire()) for _ in range(3)]
    await queued(dep, 3)
    waiters[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiters[1]
    assert dep.waiting == 2 and dep.wait_queue.waiting_by_class()["normal"] == 2
    dep.release(holder)
    dep.release(await waiters[0])
    dep.release(await waiters[2])
    assert dep.in_flight == 0 and dep.waiting == 0


async def test_no_slot_leaks_when_calls_are_cancelled_at_random_points():
    r, plan, dep = router(limit=2)
    gate = Gate()
    tasks = [asyncio.create_task(r.run(plan, lambda _d, n=n: gate.call(str(n)))) for n in range(20)]
    await gate.wait_started(2)
    await queued(dep, 18)
    for n, task in enumerate(tasks):
        if n % 3 == 0:
            task.cancel()
    for n in range(20):
        gate.finish(str(n))
    await asyncio.gather(*tasks, return_exceptions=True)
    assert dep.in_flight == 0 and dep.waiting == 0
    assert sum(dep.wait_queue.waiting) == 0


async def test_service_is_charged_to_the_program_that_held_the_slot():
    clock = Clock()
    r, plan, dep = router(limit=1, clock=clock)
    gate = Gate()

    async def call(name: str) -> None:
        with run_as(Program(name)):
            await r.run(plan, lambda _d: gate.call(name))

    first = asyncio.create_task(call("fast-path"))
    await gate.wait_started(1)
    second = asyncio.create_task(call("queued"))
    await queued(dep, 1)
    clock.now += 2
    gate.finish("fast-path")  # its slot was free: no hold, nothing charged
    await gate.wait_started(2)
    clock.now += 3
    gate.finish("queued")
    await asyncio.gather(first, second)
    assert dep.wait_queue.service("queued") == pytest.approx(3)
    assert dep.wait_queue.service("fast-path") == 0


async def test_calls_outside_any_program_run_as_the_kernel_at_normal():
    _r, _plan, dep = router(limit=1)
    holder = await dep.acquire()
    with run_as(Program("bg", ProgramClass.BACKGROUND)):
        background = asyncio.create_task(dep.acquire())
    await queued(dep, 1)
    anon = asyncio.create_task(dep.acquire())
    await queued(dep, 2)
    dep.release(holder)
    hold = await anon  # normal: before the background call that came first
    assert hold.program.id == "kernel" and hold.program.class_ is ProgramClass.NORMAL
    dep.release(hold)
    dep.release(await background)
    assert dep.in_flight == 0


async def test_a_preemptible_deployment_holds_every_slot_and_asks_the_less_urgent_to_yield():
    r, plan, dep = router(limit=1, preemptible=True)
    asked = asyncio.Event()
    gate = Gate()

    async def background() -> None:
        with run_as(Program("agent", ProgramClass.BACKGROUND)):
            async def generate(_d):
                hold = current_hold.get()  # the driver finds the hold of its call here
                assert hold is not None and hold.program.id == "agent"
                hold.on_preempt = asked.set
                return await gate.call("agent")
            await r.run(plan, generate)

    async def popup() -> None:
        with run_as(Program("popup", ProgramClass.INTERACTIVE)):
            await r.run(plan, lambda _d: gate.call("popup"))

    bg = asyncio.create_task(background())
    await gate.wait_started(1)
    assert dep.wait_queue is not None and dep.wait_queue.snapshot()["programs"][0]["running"] == 1
    urgent = asyncio.create_task(popup())
    await asyncio.wait_for(asked.wait(), 1)  # asked while it still runs (the driver would pause now)
    gate.finish("agent")
    gate.finish("popup")
    await asyncio.gather(bg, urgent)
    assert dep.in_flight == 0


async def test_a_full_queue_still_answers_overloaded():
    from app.kernel.errors import OverloadedError

    _r, _plan, dep = router(limit=1)
    dep.max_queue = 1
    holder = await dep.acquire()
    waiting = asyncio.create_task(dep.acquire())
    await queued(dep, 1)
    with pytest.raises(OverloadedError):
        await dep.acquire()
    dep.release(holder)
    dep.release(await waiting)
    assert dep.in_flight == 0
