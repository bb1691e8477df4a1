"""Automatic swaps: the triggers besides MANUAL.

- ERROR: a socket's primary starts failing (its circuit opens) → the first healthy fallback
  is swapped in; the failing model stays first in the fallback chain, so it comes back into
  use as a fallback once it recovers.
- PERFORMANCE: the primary's latency (EWMA of time to first token) exceeds the alias's
  threshold → the fastest healthy fallback below it is swapped in.
- RESOURCE: free RAM falls under the minimum while a local model is in a socket → the first
  fallback that is remote, or needs less memory, is swapped in.
- SCHEDULE: time-of-day rules put a model into an alias for a window of the day.
- WORKLOAD: a request that declares its task kind swaps its alias to the rule's model
  before it is routed.

Automatic swaps are GRACEFUL (nothing running is lost) and rate-limited per alias
(`auto_swap_cooldown_s`) so two triggers cannot make a socket flap. None is silent: each says
why (`reason`), and the socket publishes `AutoSwapped`, logs it and shows it in the alias's
state (manager.py). None is permanent by default either: after ERROR, PERFORMANCE and
RESOURCE the user's model comes back (trigger RECOVERY) once it has been healthy for
`return_after_s` — every probe in that time passed and nothing failed (and for RESOURCE, its
memory fits again); if it fails again soon after coming back, the next wait is longer (doubled,
up to eight times). `auto_return = false` keeps the model swapped in instead. A schedule's
window ends with the user's model back; a WORKLOAD swap stays until the next task decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from app.kernel.config import ScheduleRule, SocketSettings
from app.kernel.errors import ByenatosError
from app.kernel.events import Event, EventBus, HealthChanged, RequestFinished
from app.kernel.socket.manager import AutoSwap, SocketManager, SwapResult, SwapStrategy, SwapTrigger
from app.kernel.socket.router import CircuitState, Router

if TYPE_CHECKING:
    from app.kernel.canonical import ModelSpec
    from app.kernel.models.registry import Registry

log = logging.getLogger(__name__)

# The triggers after which the user's model comes back by itself once healthy (auto_return).
RETURNING = frozenset({SwapTrigger.ERROR, SwapTrigger.PERFORMANCE, SwapTrigger.RESOURCE})
_MAX_BACKOFF = 8  # the wait before a return grows up to this many times return_after_s


class SwapController:
    def __init__(
        self,
        socket: SocketManager,
        router: Router,
        registry: Registry,
        events: EventBus,
        settings: SocketSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = datetime.now,
        memory_available: Callable[[], int | None] | None = None,
    ) -> None:
        self.socket, self.router, self.registry, self.events = socket, router, registry, events
        self.settings = settings
        self.clock, self.wall_clock = clock, wall_clock
        self.memory_available = memory_available
        self._last_auto: dict[str, float] = {}
        self._ready_since: dict[str, float] = {}  # alias → since when its user's model may come back
        self._returned_at: dict[str, float] = {}  # alias → when the user's model last came back
        self._backoff: dict[str, int] = {}  # alias → how many times return_after_s the next wait is
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        sub = self.events.subscribe(accepts=self._wants)
        self._tasks = [asyncio.create_task(self._listen(sub), name="swap-policy-events"),
                       asyncio.create_task(self._tick_loop(), name="swap-policy-ticks")]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def _listen(self, sub) -> None:  # type: ignore[no-untyped-def]
        async for event in sub:
            try:
                await self.on_event(event)
            except ByenatosError as e:  # an automatic swap that cannot happen is logged, not fatal
                log.warning("automatic swap skipped: %s", e)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.probe_interval_s)
            try:
                await self.tick()
            except ByenatosError as e:
                log.warning("socket policy check failed: %s", e)

    # -- triggers ----------------------------------------------------------------------------
    def _wants(self, event: Event) -> bool:
        """The events `on_event` acts on; the rest (every other finished request) are not queued."""
        if isinstance(event, RequestFinished):
            return event.outcome == "ok" and bool(self.settings.latency_threshold_ms)
        return isinstance(event, HealthChanged)

    async def on_event(self, event: Event) -> SwapResult | None:
        if isinstance(event, HealthChanged) and not event.ok and self.settings.swap_on_error:
            return await self._on_failing(event.model, event.detail)
        if isinstance(event, RequestFinished) and event.outcome == "ok":
            return await self._on_latency(event.model)
        return None

    async def tick(self) -> list[SwapResult]:
        """Periodic work: probe failing deployments (and the user's models waiting to come back),
        then the SCHEDULE and RESOURCE rules, then the returns to the user's models."""
        waiting = self._waiting_to_return()
        probed: dict[str, bool] = {}
        for dep in self.router.deployments():
            if dep.state is not CircuitState.CLOSED or dep.id in waiting:
                probed[dep.id] = await self.router.probe(dep)
        for model in waiting:  # not routed to since the swap: no deployment yet
            spec = self.registry.all_models().get(model)
            if model not in probed and spec is not None:
                probed[model] = await self.router.probe(self.router.deployment(spec))
        done = [r for r in [*(await self._apply_schedule()), await self._check_memory()] if r]
        done += await self._check_returns(probed)
        return done

    async def on_workload(self, alias: str, task: str) -> SwapResult | None:
        """WORKLOAD: called before routing a request that declares its task kind."""
        for rule in self.settings.workload:
            if rule.alias == alias and rule.task == task:
                current = self.socket.generation(alias).config.model
                target = self.registry.find_model(rule.model).id
                if current != target:
                    # not rate-limited: the rule is explicit and the request is waiting for it
                    return await self.socket.swap(alias, target, SwapStrategy.GRACEFUL, SwapTrigger.WORKLOAD,
                                                  reason=f"a request asked for the task {task!r}, which the "
                                                         f"workload rules give to {target}")
        return None

    async def _on_failing(self, model: str, detail: str = "") -> SwapResult | None:
        for state in self.socket.aliases():
            c = state.config
            if c.model != model or not self._may_auto_swap(c.alias):
                continue
            target = next((fb for fb in c.fallbacks if self._healthy(fb)), None)
            if target is None:
                continue
            self._came_back_too_soon(c.alias)
            # keep the failing model first in line: it serves again as a fallback once healthy
            rest = [m for m in c.fallbacks if m not in (target, model)]
            reason = f"{model} was failing: {detail}" if detail else f"{model} was failing"
            return await self._auto(c.alias, target, SwapTrigger.ERROR, reason, fallbacks=[model, *rest],
                                    detail=detail)
        return None

    async def _on_latency(self, model: str) -> SwapResult | None:
        thresholds = self.settings.latency_threshold_ms
        if not thresholds:
            return None
        for state in self.socket.aliases():
            c = state.config
            limit = thresholds.get(c.alias)
            if limit is None or c.model != model or not self._may_auto_swap(c.alias):
                continue
            latency = self._latency(c.model)
            if latency is None or latency <= limit:
                continue
            candidates = [(self._latency(fb), fb) for fb in c.fallbacks if self._healthy(fb)]
            better = sorted((lat if lat is not None else 0.0, fb) for lat, fb in candidates
                            if lat is None or lat < limit)
            if better:
                self._came_back_too_soon(c.alias)
                detail = f"{latency:.0f} ms to answer on average, over the {limit:.0f} ms set for socket {c.alias}"
                reason = f"{c.model} took {detail}"
                return await self._auto(c.alias, better[0][1], SwapTrigger.PERFORMANCE, reason, detail=detail)
        return None

    async def _apply_schedule(self) -> list[SwapResult]:
        now = self.wall_clock()
        done = []
        in_window = set()
        for rule in self.settings.schedule:
            if not _in_window(rule, now):
                continue
            in_window.add(rule.alias)
            try:
                target = self.registry.find_model(rule.model).id
                current = self.socket.generation(rule.alias).config.model
            except ByenatosError as e:
                log.warning("schedule rule for %s skipped: %s", rule.alias, e)
                continue
            if current != target:
                reason = f"the schedule puts {target} in socket {rule.alias} from {rule.start} to {rule.end}"
                done.append(await self.socket.swap(rule.alias, target, SwapStrategy.GRACEFUL, SwapTrigger.SCHEDULE,
                                                   reason=reason, detail=f"from {rule.start} to {rule.end}"))
        for auto in self.socket.auto_swaps():  # a window that ended: the user's model comes back
            if auto.trigger is SwapTrigger.SCHEDULE and auto.alias not in in_window:
                try:
                    done.append(await self.socket.swap(auto.alias, auto.chosen, SwapStrategy.GRACEFUL,
                                                       SwapTrigger.SCHEDULE, reason="the schedule's window ended",
                                                       fallbacks=auto.fallbacks))
                except ByenatosError as e:
                    log.warning("socket %s stays on %s after its schedule: %s", auto.alias, auto.current, e)
        return done

    async def _check_memory(self) -> SwapResult | None:
        floor = self.settings.min_available_memory_mb
        if floor is None or self.memory_available is None:
            return None
        available = self.memory_available()
        if available is None or available >= floor * 2**20:
            return None
        models = self.registry.all_models()
        for state in self.socket.aliases():
            c = state.config
            primary = models.get(c.model)
            if primary is None or not primary.local or not self._may_auto_swap(c.alias):
                continue
            for fb in c.fallbacks:
                spec = models.get(fb)
                lighter = spec is not None and (not spec.local or (spec.memory_bytes or 0) < (primary.memory_bytes or 0))
                if lighter and self._healthy(fb):
                    self._came_back_too_soon(c.alias)
                    detail = f"free memory fell to {available // 2**20} MB, under the {floor} MB minimum"
                    reason = f"{detail}, with the local model {c.model} in the socket"
                    return await self._auto(c.alias, fb, SwapTrigger.RESOURCE, reason, detail=detail)
        return None

    # -- back to the user's model ------------------------------------------------------------
    def _waiting_to_return(self) -> set[str]:
        """The user's models that may come back by themselves (their health is probed each tick)."""
        if not self.settings.auto_return:
            return set()
        return {a.chosen for a in self.socket.auto_swaps() if a.trigger in RETURNING}

    async def _check_returns(self, probed: dict[str, bool]) -> list[SwapResult]:
        """Swap back to the user's model where it has been healthy for the whole wait."""
        done: list[SwapResult] = []
        if not self.settings.auto_return:
            self._ready_since.clear()
            return done
        now = self.clock()
        models = self.registry.all_models()
        for auto in self.socket.auto_swaps():
            if auto.trigger not in RETURNING:
                continue
            spec = models.get(auto.chosen)
            ready = (spec is not None and probed.get(auto.chosen, False)
                     and self.router.deployment(spec).state is CircuitState.CLOSED and self._fits_again(auto, spec))
            if not ready:
                self._ready_since.pop(auto.alias, None)  # the wait starts again from the next good probe
                continue
            since = self._ready_since.setdefault(auto.alias, now)
            wait = self.settings.return_after_s * self._backoff.get(auto.alias, 1)
            if now - since < wait:
                continue
            assert spec is not None
            reason = f"{auto.chosen} has been healthy again for {round(now - since)} s"
            try:
                result = await self.socket.swap(auto.alias, auto.chosen, SwapStrategy.GRACEFUL, SwapTrigger.RECOVERY,
                                                reason=reason, fallbacks=auto.fallbacks)
            except ByenatosError as e:
                log.warning("socket %s could not go back to %s: %s", auto.alias, auto.chosen, e)
                continue
            self._ready_since.pop(auto.alias, None)
            self._returned_at[auto.alias] = now
            if auto.trigger is SwapTrigger.PERFORMANCE:
                self.router.deployment(spec).latency_ms = None  # measured afresh, not judged by the old average
            done.append(result)
        return done

    def _fits_again(self, auto: AutoSwap, spec: ModelSpec) -> bool:
        """RESOURCE: the user's local model fits in free memory again, above the minimum."""
        floor = self.settings.min_available_memory_mb
        if auto.trigger is not SwapTrigger.RESOURCE or floor is None or self.memory_available is None:
            return True
        available = self.memory_available()
        return available is None or available - (spec.memory_bytes or 0) >= floor * 2**20

    def _came_back_too_soon(self, alias: str) -> None:
        """An automatic swap away from a model that came back lately: the next wait is longer."""
        back = self._returned_at.get(alias)
        wait = self.settings.return_after_s * self._backoff.get(alias, 1)
        if back is not None and self.clock() - back < max(wait, self.settings.auto_swap_cooldown_s):
            self._backoff[alias] = min(self._backoff.get(alias, 1) * 2, _MAX_BACKOFF)
        else:
            self._backoff.pop(alias, None)
        self._returned_at.pop(alias, None)

    # -- helpers -----------------------------------------------------------------------------
    async def _auto(self, alias: str, model: str, trigger: SwapTrigger, reason: str,
                    fallbacks: list[str] | None = None, detail: str = "") -> SwapResult:
        self._last_auto[alias] = self.clock()
        returns = self.settings.auto_return and trigger in RETURNING
        return await self.socket.swap(alias, model, SwapStrategy.GRACEFUL, trigger, reason=reason, detail=detail,
                                      fallbacks=fallbacks, returns=returns)

    def _may_auto_swap(self, alias: str) -> bool:
        last = self._last_auto.get(alias)
        return last is None or self.clock() - last >= self.settings.auto_swap_cooldown_s

    def _healthy(self, model_id: str) -> bool:
        spec = self.registry.all_models().get(model_id)
        return spec is not None and self.router.deployment(spec).state is CircuitState.CLOSED

    def _latency(self, model_id: str) -> float | None:
        spec = self.registry.all_models().get(model_id)
        return None if spec is None else self.router.deployment(spec).latency_ms


def _in_window(rule: ScheduleRule, now: datetime) -> bool:
    minutes = now.hour * 60 + now.minute
    start = int(rule.start[:2]) * 60 + int(rule.start[3:])
    end = int(rule.end[:2]) * 60 + int(rule.end[3:])
    return start <= minutes < end if start <= end else minutes >= start or minutes < end
