"""What a wait queue keeps: a call waiting for a slot (`Waiter`), a slot held (`Hold`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar

from app.kernel.scheduler.program import Program


class Hold:
    """A slot the queue handed out (or, on a preemptible deployment, any slot): the program
    holding it and since when (the scheduler's clock)."""

    __slots__ = ("lend", "on_preempt", "preempt_requested", "program", "since")

    def __init__(self, program: Program, since: float) -> None:
        self.program = program
        self.since = since
        # The preemption hook: a driver that can pause a generation at a token boundary sets
        # `on_preempt` (or polls `preempt_requested` between tokens), pauses the call and gives
        # the slot to the waiter (`lend`); the llama.cpp driver resumes the call afterwards.
        self.preempt_requested = False
        self.on_preempt: Callable[[], None] | None = None
        # Set by a preemptible deployment while the slot is held: the driver calls it when it
        # agrees to pause this call for the waiter, which then gets the slot at once (the paused
        # call resumes on the model without queueing again: Deployment.lend).
        self.lend: Callable[[], None] | None = None

    def request_preemption(self) -> None:
        """A more urgent call waits for this slot: ask its holder to yield (once)."""
        if not self.preempt_requested:
            self.preempt_requested = True
            if self.on_preempt is not None:
                self.on_preempt()

    def __repr__(self) -> str:
        return f"Hold({self.program.id!r}, since={self.since:.3f})"


#: The hold of the call running in this context, on a preemptible deployment (set by
#: `Deployment.acquire`): what a preemptible driver looks at between tokens.
current_hold: ContextVar[Hold | None] = ContextVar("byenatos_hold", default=None)


class Waiter:
    """One call waiting for a slot. `future` resolves to its `Hold`."""

    __slots__ = ("arrived", "future", "live", "program", "seq")

    def __init__(self, future: asyncio.Future[Hold], program: Program, seq: int, arrived: float) -> None:
        self.future = future
        self.program = program
        self.seq = seq
        self.arrived = arrived
        self.live = True  # False once served or gone: indices skip it

    def __repr__(self) -> str:
        return f"Waiter({self.program.id!r}, {self.program.class_.value}, #{self.seq})"
