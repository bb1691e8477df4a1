"""Helpers for driving a wait queue by hand: a clock the test moves, and the order of service."""

from __future__ import annotations

import pytest

from app.kernel.scheduler import Program, ProgramClass, Scheduler, Waiter, WaitQueue


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def program(pid: str, cls: str = "normal", priority: int = 0) -> Program:
    return Program(pid, ProgramClass(cls), priority)


def queue(policy: str, clock: Clock, starvation_s: float = 30.0) -> WaitQueue:
    return Scheduler(policy, starvation_s, clock=clock).new_queue()


def served_next(q: WaitQueue, waiting: list[Waiter], hold=None) -> Waiter | None:
    """Give a slot back (with `hold`): the waiter it went to (removed from `waiting`), or None."""
    if not q.hand_over(hold):
        return None
    (w,) = [w for w in waiting if w.future.done() and not w.future.cancelled()]
    waiting.remove(w)
    return w


def serve_all(q: WaitQueue, waiting: list[Waiter]) -> list[Waiter]:
    """Free one slot after another (no hold given back): the waiters in the order served."""
    order = []
    while (w := served_next(q, waiting)) is not None:
        order.append(w)
    return order
