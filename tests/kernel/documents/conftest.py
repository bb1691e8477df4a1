"""Fixtures for the document index: a real kernel, its personal store open, and a way to await
the index's events (never a sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from app.kernel.events import Event, EventBus


@pytest.fixture
async def docs(kernel):
    """The kernel's DocumentsService, the personal store open."""
    await kernel.personal.ready()
    return kernel.documents


class Waiter:
    """Subscribed at once (so nothing published after it is missed); `next` awaits a match."""

    def __init__(self, bus: EventBus, match: Callable[[Event], bool]) -> None:
        self.sub = bus.subscribe(accepts=match)

    async def next(self, timeout: float = 30.0) -> Event:
        async with asyncio.timeout(timeout):
            return await self.sub.queue.get()

    def close(self) -> None:
        self.sub.close()


@pytest.fixture
def waiter(kernel):
    made: list[Waiter] = []

    def make(match: Callable[[Event], bool]) -> Waiter:
        w = Waiter(kernel.events, match)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
