"""Typed kernel events on an in-process async bus.

Publishing never blocks and never fails the publisher: each subscriber has its own bounded
queue, and a subscriber that does not keep up loses its oldest events (counted in
`dropped`) rather than slowing requests down. The UI bridge and `/api/events` subscribe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    ts: float = field(default_factory=time.time, kw_only=True)

    @property
    def name(self) -> str:
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}


@dataclass(frozen=True, slots=True)
class RequestFinished(Event):
    model: str
    provider: str
    app: str | None
    stream: bool
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    outcome: str  # "ok" or an error code


@dataclass(frozen=True, slots=True)
class ModelsChanged(Event):
    provider: str | None
    count: int


@dataclass(frozen=True, slots=True)
class ProviderHealthChanged(Event):
    provider: str
    ok: bool
    detail: str = ""


# ── resident local models (residency.py) ──


@dataclass(frozen=True, slots=True)
class ModelLoading(Event):
    """A local model started loading (progress 0), or a driver that can tell reports how far it is."""

    model: str
    provider: str
    progress: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelLoaded(Event):
    model: str
    provider: str
    bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ModelEvicted(Event):
    model: str
    provider: str
    reason: str  # "lru" (room for another model), "budget" (limits lowered), "manual"


@dataclass(frozen=True, slots=True)
class ModelLoadFailed(Event):
    model: str
    provider: str
    error: str


@dataclass(frozen=True, slots=True)
class HealthChanged(Event):
    """A deployment (one model on one provider) started cooling down after errors (again, after a
    failed trial: `until` is then later), or recovered."""

    model: str
    provider: str
    ok: bool
    detail: str = ""  # why it is cooling down: the upstream's words (or "recovered", "probe ok")
    state: str = ""  # "cooling" or "ok"
    until: float | None = None  # cooling: when it is tried again (unix time)


@dataclass(frozen=True, slots=True)
class SwapStarted(Event):
    alias: str
    from_model: str | None
    to_model: str
    strategy: str
    trigger: str


@dataclass(frozen=True, slots=True)
class SwapFinished(Event):
    alias: str
    from_model: str | None
    to_model: str
    strategy: str
    trigger: str
    duration_ms: float
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class AutoSwapped(Event):
    """The socket swapped an alias by itself (trigger error, performance, resource, schedule,
    workload), or back to the user's model (trigger "recovery"). Published after its
    SwapFinished; `ts` is when. While the alias is away from the user's model, `chosen` names it
    and `returns` says whether it comes back by itself once healthy (`socket.auto_return`);
    on the way back `chosen` is None."""

    alias: str
    from_model: str | None
    to_model: str
    trigger: str
    reason: str  # why, in words: "a/m was failing: model overloaded (HTTP 503 from provider a)"
    chosen: str | None = None
    returns: bool = False
    # The facts behind `reason` without the models' ids, for a UI that names models its own way:
    # "model overloaded (HTTP 503 from provider a)", "850 ms on average, over the 500 ms set".
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SwapFailed(Event):
    alias: str
    to_model: str
    error: str


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int, accepts: Callable[[Event], bool] | None = None) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.accepts = accepts

    def offer(self, event: Event) -> None:
        if self.accepts is not None and not self.accepts(event):
            return  # not queued at all: no wake-up of the consumer for an event it would ignore
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def close(self) -> None:
        self._bus._subs.discard(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        try:
            while True:
                yield await self.queue.get()
        finally:
            self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def publish(self, event: Event) -> None:
        for sub in tuple(self._subs):
            sub.offer(event)

    def subscribe(self, maxsize: int = 1000, accepts: Callable[[Event], bool] | None = None) -> Subscription:
        """A queue of the events published from now on; `accepts` filters them at publish time."""
        sub = Subscription(self, maxsize, accepts)
        self._subs.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
