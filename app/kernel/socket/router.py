"""The router: which deployment serves a request, and what happens when it fails.

A *deployment* is one model on one provider (a `ModelSpec` plus the provider's driver).
A request comes with a `RoutePlan`: tiers of candidate models — the socket's pool first,
then each fallback — and a strategy for choosing within a tier. The router

- orders a tier's healthy deployments by the strategy,
- admits the request through the deployment's concurrency limit (bounded queue; a full
  queue moves on to the next candidate, and `OverloadedError` when every one is full); who
  waits goes in the order of the scheduler's policy (app.kernel.scheduler: least attained
  service per program by default, interactive callers first, nothing starves),
- retries retryable failures with exponential backoff and full jitter, but fails over at
  once when the connection itself failed (`UpstreamUnreachableError`) or the deployment is
  misconfigured (auth, not found), and never retries a request the backend rejected as
  malformed,
- falls over to a larger-window model when the prompt is too long,
- keeps health per deployment: passive error counting opens a circuit breaker that cools
  down (exponentially, capped) and lets one trial request through when the cooldown is over;
  `probe()` closes it early when an active health check succeeds,
- for streams, does all of the above only until the first chunk reached the caller; after
  that an error ends the stream with a typed error instead of a retry. A stream that ends
  before its first chunk is a failed attempt (`EmptyAnswerError`), not a success.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from app.kernel.canonical import ModelSpec
from app.kernel.errors import (
    AuthenticationError,
    ByenatosError,
    ContextWindowExceededError,
    EmptyAnswerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    SwappedOutError,
    UpstreamUnavailableError,
    UpstreamUnreachableError,
)
from app.kernel.events import EventBus, HealthChanged
from app.kernel.scheduler import Hold, Scheduler, WaitQueue, current_hold, current_program

if TYPE_CHECKING:
    from app.kernel.drivers.base import Driver

log = logging.getLogger(__name__)
T = TypeVar("T")


class RoutingStrategy(StrEnum):
    ROUND_ROBIN = "round_robin"
    LEAST_LOADED = "least_loaded"
    FASTEST_RESPONSE = "fastest_response"
    HIGHEST_QUALITY = "highest_quality"
    LOWEST_COST = "lowest_cost"
    RESOURCE_AWARE = "resource_aware"


class CircuitState(StrEnum):
    CLOSED = "closed"  # healthy
    OPEN = "open"  # cooling down: skipped
    HALF_OPEN = "half_open"  # cooled down: one trial request decides


@dataclass(slots=True)
class RouterPolicy:
    max_retries: int = 2  # per deployment, for retryable errors
    backoff_base: float = 0.05  # seconds; attempt n waits up to base * 2**n (full jitter)
    backoff_max: float = 2.0
    failure_threshold: int = 3  # consecutive failures that open the circuit
    cooldown: float = 5.0  # first cooldown; doubles while failures continue
    cooldown_max: float = 60.0
    ewma_alpha: float = 0.2  # weight of the newest latency sample
    max_concurrency_cloud: int = 64
    max_concurrency_local: int = 4  # in-process/Ollama runtimes serialise anyway; a few overlap I/O
    max_queue: int = 256  # waiting requests per deployment before it refuses


# -- per-deployment state --------------------------------------------------------------------
class Deployment:
    """Health, load and latency of one model on one provider."""

    def __init__(self, spec: ModelSpec, driver: Driver, policy: RouterPolicy,
                 scheduler: Scheduler | None = None) -> None:
        self.spec = spec
        self.driver = driver
        # Runtimes that hold the weights themselves (in-process llama.cpp, Ollama) serialise
        # generation, so a small limit keeps the queue honest; servers that batch (vLLM, LM
        # Studio, any OpenAI-compatible endpoint) get the cloud limit even on loopback.
        self.limit = policy.max_concurrency_local if driver.manages_memory else policy.max_concurrency_cloud
        self.max_queue = policy.max_queue
        self.in_flight = 0
        self.waiting = 0
        self.scheduler = scheduler or Scheduler()
        self.wait_queue: WaitQueue | None = None  # made the first time every slot is busy
        # A runtime that can pause a generation at a token boundary (the in-process llama.cpp
        # driver): every slot then has a Hold, so a running call of a less urgent class can be
        # asked to yield (app.kernel.scheduler.queue) and lend its slot (`lend`).
        self.preemptible: bool = getattr(driver, "preemptible", False)
        self._lent: set[Hold] = set()  # holds whose slot went to a more urgent call (`lend`)
        self.latency_ms: float | None = None  # EWMA of time to first byte/token
        self.state = CircuitState.CLOSED
        self.failures = 0  # consecutive
        self.open_until = 0.0
        self.cooling_until = 0.0  # open_until as unix time (what the API and the UI show)
        self.cooldown = policy.cooldown
        self.trial_running = False
        self.last_error: str = ""
        self.served = 0
        self.errors = 0

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def load(self) -> int:
        return self.in_flight + self.waiting

    def admissible(self, now: float) -> bool:
        """May a request be sent here now? (An open circuit past its cooldown admits one trial.)"""
        if self.state is CircuitState.CLOSED:
            return True
        if now < self.open_until:
            return False
        return not self.trial_running

    # Concurrency: a counter on the fast path; the scheduler's queue only when saturated.
    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody is queued for it."""
        if self.in_flight < self.limit and not self.waiting:
            self.in_flight += 1
            return True
        return False

    async def acquire(self) -> Hold | None:
        """Take a slot, waiting in the scheduler's order if none is free; give it back with
        `release(hold)`. The hold is None for a slot that was free (nobody waited: nothing to
        charge), else who holds it since when (its time counts as the program's service)."""
        if self.in_flight < self.limit and not self.waiting and not self.preemptible:
            self.in_flight += 1
            return None
        return await self._queued()

    async def _queued(self) -> Hold:
        queue = self.wait_queue
        if queue is None:
            queue = self.wait_queue = self.scheduler.new_queue(preemptible=self.preemptible)
        if self.try_acquire():  # a preemptible deployment with a free slot: held, not queued
            hold = queue.hold(current_program.get())
        else:
            if self.waiting >= self.max_queue:
                raise OverloadedError(
                    f"{self.spec.id} is busy ({self.in_flight} running, {self.waiting} waiting)",
                    provider=self.spec.provider, model=self.spec.name,
                )
            waiter = queue.push(current_program.get())
            self.waiting += 1
            try:
                hold = await waiter.future  # release() hands its slot over: in_flight stays counted
            except asyncio.CancelledError:
                if waiter.future.done() and not waiter.future.cancelled():
                    self.release(waiter.future.result())  # the slot was handed to us just as we were cancelled
                else:
                    queue.discard(waiter)
                raise
            finally:
                self.waiting -= 1
        if self.preemptible:
            hold.lend = lambda: self.lend(hold)
            current_hold.set(hold)  # for the driver: the hold it may be asked to give up
        return hold

    def lend(self, hold: Hold) -> None:
        """Preemption: the driver pauses `hold`'s call for a more urgent waiter. The slot goes to
        the scheduler's next pick now (the time so far charged to `hold`); the paused call goes
        on without a slot (the driver resumes it when the urgent call is done with the model),
        and its `release` gives nothing back. Once per hold: at most `limit` calls run beyond the
        limit, and the driver never runs one of them ahead of a more urgent call."""
        hold.lend = None
        queue = self.wait_queue
        if queue is not None and any(queue.waiting) and queue.hand_over(hold):
            self._lent.add(hold)

    def release(self, hold: Hold | None = None) -> None:
        """Give a slot back (with the hold `acquire` returned): to the next waiter, if any."""
        if hold is not None:
            hold.lend = None
            if self._lent and hold in self._lent:  # lent to a more urgent call: nothing to give back
                self._lent.discard(hold)
                return
        if hold is None and not self.waiting:
            self.in_flight -= 1
            return
        queue = self.wait_queue
        if queue is None or not queue.hand_over(hold):
            self.in_flight -= 1

    @property
    def health(self) -> str:
        """In words: "ok", or "cooling" while the circuit is open or on trial (after errors)."""
        return "ok" if self.state is CircuitState.CLOSED else "cooling"

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready state; `now` on the router's clock (its cooldowns run on it)."""
        now = time.monotonic() if now is None else now
        cooling = self.state is not CircuitState.CLOSED
        return {
            "model": self.spec.id, "state": self.state.value, "in_flight": self.in_flight, "waiting": self.waiting,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 2),
            "failures": self.failures, "served": self.served, "errors": self.errors, "last_error": self.last_error,
            "open_for_s": max(0.0, round(self.open_until - now, 2)) if cooling else 0.0,
            # "cooling" (after errors, until it answers again) or "ok"; `until`: when it is tried
            # again (unix time; passed while a trial is due or running)
            "health": self.health, "until": self.cooling_until if cooling else None,
        }


@dataclass(slots=True)
class RoutePlan:
    """What to try for one request: tiers of models, best tier first."""

    tiers: list[list[ModelSpec]]
    strategy: RoutingStrategy = RoutingStrategy.ROUND_ROBIN
    key: str = ""  # round-robin counter key (the alias)
    generation: Any = None  # socket.Generation: lets an IMMEDIATE swap cancel this request
    min_context: int = 0  # after a context overflow: only models with a larger window

    @property
    def primary(self) -> ModelSpec:
        return self.tiers[0][0]


@dataclass(slots=True)
class Attempt:
    """What the caller gets to know about the deployment that served it."""

    deployment: Deployment
    retries: int = 0
    failovers: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Opening:
    """A request's first attempt, begun outside `run` (the gateway's pass-through lane): the
    deployment chosen, whether its slot is held, and the candidates still to try.

    `run(plan, call, opening=...)` carries on exactly where its own loop would be: attempt 0
    on `dep` is the opening's (made and `failed`, or not made yet), nothing is tried twice and
    round-robin does not advance twice.
    """

    plan: RoutePlan
    dep: Deployment
    info: Attempt
    # The candidates still to try; None: the tiers after the first (`Router.rest_after`), made
    # only if the opening is handed over (most are answered, and the lane's path is short).
    rest: Iterator[tuple[Deployment, Attempt]] | None
    started: float  # when attempt 0 began (perf_counter)
    acquired: bool  # the deployment's slot is held for attempt 0
    failed: ByenatosError | None = None  # attempt 0 was made and failed with this
    taken: bool = False  # handed to the router (or finished): abandon() does nothing then

    def abandon(self) -> None:
        """Give back what the opening holds, if nobody took it over (the request ended first)."""
        if self.taken:
            return
        self.taken = True
        if self.acquired:
            self.dep.release()
        self.dep.trial_running = False


# -- the router ------------------------------------------------------------------------------
class Router:
    def __init__(
        self,
        driver_for: Callable[[str], Driver],
        events: EventBus,
        policy: RouterPolicy | None = None,
        memory_free: Callable[[], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        scheduler: Scheduler | None = None,
    ) -> None:
        self._driver_for = driver_for
        self.events = events
        self.policy = policy or RouterPolicy()
        self._memory_free = memory_free  # bytes of RAM available now (RESOURCE_AWARE)
        self._deployments: dict[str, Deployment] = {}
        self._rr: dict[str, itertools.count[int]] = {}
        self._sleep = asyncio.sleep  # replaced in tests that count backoff
        self.clock = clock  # cooldowns run on this clock; tests advance a fake one
        self.scheduler = scheduler or Scheduler()  # who waits for a busy deployment goes in its order

    # -- deployments ---------------------------------------------------------------------------
    def deployment(self, spec: ModelSpec) -> Deployment:
        dep = self._deployments.get(spec.id)
        if dep is None or (dep.spec is not spec and dep.spec != spec):
            driver = self._driver_for(spec.provider)
            if dep is None:
                dep = Deployment(spec, driver, self.policy, self.scheduler)
                self._deployments[spec.id] = dep
            else:  # the registry's facts changed (window, prices): keep health and load
                dep.spec, dep.driver = spec, driver
        return dep

    def forget_provider(self, provider: str) -> None:
        """A provider's driver was rebuilt (new key or URL): start its health afresh."""
        for mid in [m for m, d in self._deployments.items() if d.spec.provider == provider]:
            del self._deployments[mid]

    def deployments(self) -> list[Deployment]:
        return list(self._deployments.values())

    # -- choosing ------------------------------------------------------------------------------
    def order(self, tier: list[ModelSpec], plan: RoutePlan, now: float) -> list[Deployment]:
        deps = [self.deployment(s) for s in tier if s.context_window > plan.min_context or not plan.min_context]
        ready = [d for d in deps if d.admissible(now)]
        if len(ready) <= 1:
            return ready
        s = plan.strategy
        if s is RoutingStrategy.ROUND_ROBIN:
            n = next(self._rr.setdefault(plan.key, itertools.count())) % len(ready)
            return ready[n:] + ready[:n]
        if s is RoutingStrategy.LEAST_LOADED:
            n = next(self._rr.setdefault(plan.key, itertools.count())) % len(ready)
            rotated = ready[n:] + ready[:n]  # ties go round robin, not always to the first
            return sorted(rotated, key=lambda d: d.load)
        if s is RoutingStrategy.FASTEST_RESPONSE:
            # unmeasured deployments go first once, so every one gets a latency sample
            return sorted(ready, key=lambda d: -1.0 if d.latency_ms is None else d.latency_ms)
        if s is RoutingStrategy.HIGHEST_QUALITY:
            return sorted(ready, key=lambda d: -d.spec.quality)
        if s is RoutingStrategy.LOWEST_COST:
            return sorted(ready, key=lambda d: d.spec.input_cost_per_token + d.spec.output_cost_per_token)
        return sorted(ready, key=self._resource_score)

    def _resource_score(self, d: Deployment) -> tuple[int, int, float]:
        """RESOURCE_AWARE: local models that fit in free memory first (fewest busy first),
        then cloud; local models that would not fit go last."""
        free = self._memory_free() if self._memory_free else None
        if not d.spec.local:
            return (1, d.load, 0.0)
        fits = free is None or (d.spec.memory_bytes or 0) <= free
        return (0 if fits else 2, d.load, float(d.spec.memory_bytes or 0))

    # -- health --------------------------------------------------------------------------------
    def record_success(self, dep: Deployment, latency_ms: float) -> None:
        a = self.policy.ewma_alpha
        dep.latency_ms = latency_ms if dep.latency_ms is None else a * latency_ms + (1 - a) * dep.latency_ms
        dep.served += 1
        dep.failures = 0
        if dep.state is not CircuitState.CLOSED:
            dep.state = CircuitState.CLOSED
            dep.cooldown = self.policy.cooldown
            self.events.publish(HealthChanged(model=dep.id, provider=dep.spec.provider, ok=True, detail="recovered",
                                              state="ok"))

    def _failure(self, dep: Deployment, error: ByenatosError) -> None:
        dep.errors += 1
        dep.failures += 1
        dep.last_error = str(error)
        unreachable = isinstance(error, UpstreamUnreachableError)
        # The reason in words (the event names the model already): error.message, not str(error).
        if dep.state is CircuitState.CLOSED and (unreachable or dep.failures >= self.policy.failure_threshold):
            self._open(dep, error.message)
        elif dep.state is not CircuitState.CLOSED:  # a failed trial: cool down longer
            dep.cooldown = min(dep.cooldown * 2, self.policy.cooldown_max)
            self._open(dep, error.message)

    def _open(self, dep: Deployment, reason: str) -> None:
        was_closed = dep.state is CircuitState.CLOSED
        dep.state = CircuitState.OPEN
        dep.open_until = self.clock() + dep.cooldown
        dep.cooling_until = time.time() + dep.cooldown
        if was_closed:
            log.warning("%s is failing (%s): cooling down for %.0f s", dep.id, reason, dep.cooldown)
        # Also after a failed trial: the cooldown is longer, and `until` says how long.
        self.events.publish(HealthChanged(model=dep.id, provider=dep.spec.provider, ok=False, detail=reason,
                                          state="cooling", until=dep.cooling_until))

    async def probe(self, dep: Deployment) -> bool:
        """Active health check; a healthy answer closes an open circuit without waiting."""
        try:
            status = await dep.driver.health()
        except ByenatosError as e:
            status_ok, detail = False, e.message
        else:
            status_ok, detail = status.ok, status.detail
        if status_ok and dep.state is not CircuitState.CLOSED:
            dep.state, dep.failures, dep.cooldown = CircuitState.CLOSED, 0, self.policy.cooldown
            self.events.publish(HealthChanged(model=dep.id, provider=dep.spec.provider, ok=True, detail="probe ok",
                                              state="ok"))
        elif not status_ok and dep.state is CircuitState.CLOSED:
            self._open(dep, detail or "health probe failed")
        return status_ok

    # -- running requests --------------------------------------------------------------------
    async def _backoff(self, attempt: int, retry_after: float | None) -> None:
        p = self.policy
        delay = random.uniform(0, min(p.backoff_max, p.backoff_base * 2**attempt))  # full jitter
        if retry_after is not None:
            delay = max(delay, min(retry_after, p.backoff_max))
        await self._sleep(delay)

    async def _retry_after_failure(self, plan: RoutePlan, dep: Deployment, info: Attempt, e: ByenatosError,
                                   attempt: int) -> bool:
        """After a failed attempt: True to retry the same deployment (backoff done), False to
        move on to the next candidate; re-raises errors that no other attempt can fix."""
        info.errors.append(f"{dep.id}: {e.message}")
        verdict = self._verdict(plan, dep, e)
        if verdict == "raise":
            raise e
        if verdict == "next" or attempt == self.policy.max_retries:
            return False
        info.retries += 1
        await self._backoff(attempt, getattr(e, "retry_after", None))
        return True

    def open(self, plan: RoutePlan) -> Opening | None:
        """Choose the first deployment for `plan` and take its slot if one is free, without
        waiting: a request served in callbacks starts here, and hands the opening to `run` if
        it cannot finish alone. None when no deployment is admissible (`run` says why)."""
        first_tier = plan.tiers[0]
        if len(first_tier) == 1 and not plan.min_context:
            # One model first (the usual socket): what `_candidates` would yield first, without
            # ordering a tier of one. Its generator still supplies the fallbacks, from tier 1.
            dep = self.deployment(first_tier[0])
            if dep.admissible(self.clock()):
                return Opening(plan, dep, self._take(dep, None), None, time.perf_counter(), dep.try_acquire())
        candidates = self._candidates(plan)
        first = next(candidates, None)
        if first is None:
            return None
        dep, info = first
        return Opening(plan, dep, info, candidates, time.perf_counter(), dep.try_acquire())

    async def run(self, plan: RoutePlan, call: Callable[[Deployment], Awaitable[T]], *,
                  opening: Opening | None = None) -> tuple[T, Attempt]:
        """Serve a non-streaming request: the answer and who gave it. With `opening`, carry on
        from a first attempt begun elsewhere (see `Opening`)."""
        last: ByenatosError | None = None
        info = None
        if opening is None:
            candidates = self._candidates(plan)
        else:
            opening.taken = True
            candidates = itertools.chain(((opening.dep, opening.info),), self.rest_after(opening))
        for dep, info in candidates:
            for attempt in range(self.policy.max_retries + 1):
                started, failed, held, hold = time.perf_counter(), None, False, None
                if opening is not None:  # attempt 0 on the opening's deployment
                    started, failed, held = opening.started, opening.failed, opening.acquired
                    opening = None
                if not held:
                    try:
                        hold = await dep.acquire()
                    except OverloadedError as e:
                        last = e
                        break
                try:
                    if failed is not None:
                        raise failed
                    result = await self._guarded(plan, dep, call)
                except ByenatosError as e:
                    last = e
                    if await self._retry_after_failure(plan, dep, info, e, attempt):
                        continue
                    break
                finally:
                    dep.release(hold)
                    if dep.trial_running:
                        dep.trial_running = False
                self.record_success(dep, (time.perf_counter() - started) * 1000)
                info.deployment = dep
                return result, info
        raise self._exhausted(plan, last, info)

    async def stream(self, plan: RoutePlan, open_stream: Callable[[Deployment], AsyncIterator[T]], *,
                     opening: Opening | None = None) -> tuple[AsyncIterator[T], Attempt]:
        """Open a stream: retries and failover happen until the first chunk is in hand. With
        `opening`, carry on from a first attempt begun elsewhere (see `Opening`)."""
        last: ByenatosError | None = None
        info = None
        if opening is None:
            candidates = self._candidates(plan)
        else:
            opening.taken = True
            candidates = itertools.chain(((opening.dep, opening.info),), self.rest_after(opening))
        for dep, info in candidates:
            for attempt in range(self.policy.max_retries + 1):
                started, failed, held, hold = time.perf_counter(), None, False, None
                if opening is not None:  # attempt 0 on the opening's deployment
                    started, failed, held = opening.started, opening.failed, opening.acquired
                    opening = None
                if failed is not None:
                    dep.release()
                    dep.trial_running = False
                    last = failed
                    if await self._retry_after_failure(plan, dep, info, failed, attempt):
                        continue
                    break
                if not held:
                    try:
                        hold = await dep.acquire()
                    except OverloadedError as e:
                        last = e
                        break
                iterator = open_stream(dep)
                try:
                    try:
                        first = await self._guarded(plan, dep, lambda _d, it=iterator: anext(it))
                    except StopAsyncIteration:
                        # A stream with not one chunk is an answer with nothing in it: a failed
                        # attempt (retried, then the next candidate), never a success.
                        raise EmptyAnswerError("the model's stream ended before its first chunk",
                                               provider=dep.spec.provider, model=dep.spec.name) from None
                except ByenatosError as e:
                    dep.release(hold)
                    dep.trial_running = False
                    await _aclose(iterator)
                    last = e
                    if await self._retry_after_failure(plan, dep, info, e, attempt):
                        continue
                    break
                except BaseException:
                    dep.release(hold)
                    dep.trial_running = False
                    await _aclose(iterator)
                    raise
                dep.trial_running = False
                self.record_success(dep, (time.perf_counter() - started) * 1000)
                info.deployment = dep
                return self._rest(plan, dep, first, iterator, hold), info
        raise self._exhausted(plan, last, info)

    def _rest(self, plan: RoutePlan, dep: Deployment, first: Any, iterator: AsyncIterator[T],
              hold: Hold | None = None) -> RoutedStream[T]:
        return RoutedStream(self, plan, dep, first, iterator, hold)

    async def _guarded(self, plan: RoutePlan, dep: Deployment, call: Callable[[Deployment], Awaitable[T]]) -> T:
        """Run one upstream call; an IMMEDIATE swap of the plan's generation cancels it cleanly."""
        gen = plan.generation
        if gen is None:
            return await call(dep)
        task = asyncio.current_task()
        assert task is not None
        handle = _CallInFlight(task)
        gen.track(handle)
        try:
            return await call(dep)
        except asyncio.CancelledError:
            # uncancel() == 0: the only cancellation was the swap's, not the caller going away
            if handle.revoked is not None and task.uncancel() == 0:
                raise SwappedOutError(handle.revoked, provider=dep.spec.provider, model=dep.spec.name) from None
            raise
        finally:
            gen.untrack(handle)

    def _verdict(self, plan: RoutePlan, dep: Deployment, e: ByenatosError) -> str:
        """"retry" the same deployment, "next" candidate, or "raise" to the caller."""
        if isinstance(e, SwappedOutError):
            return "raise"
        if isinstance(e, ContextWindowExceededError):
            plan.min_context = max(plan.min_context, dep.spec.context_window)
            return "next"
        if isinstance(e, AuthenticationError | PermissionDeniedError | NotFoundError):
            self._failure(dep, e)  # misconfigured deployment: others may serve the request
            return "next"
        if not e.retryable:
            return "raise"  # the request itself is wrong; it fails anywhere
        self._failure(dep, e)
        if isinstance(e, UpstreamUnreachableError) or dep.state is not CircuitState.CLOSED:
            return "next"
        return "retry"

    def rest_after(self, opening: Opening) -> Iterator[tuple[Deployment, Attempt]]:
        """The candidates after an opening's deployment."""
        if opening.rest is not None:
            return opening.rest
        return self._candidates(opening.plan, start=1, info=opening.info, tried={opening.dep.id})

    def _candidates(self, plan: RoutePlan, *, start: int = 0, info: Attempt | None = None,
                    tried: set[str] | None = None) -> Iterator[tuple[Deployment, Attempt]]:
        """Deployments in the order to try them, tier by tier, skipping ones already tried.
        (`start`, `info`, `tried`: carry on after deployments taken already, see `open`.)"""
        tried = set() if tried is None else tried
        for tier in plan.tiers[start:]:
            for dep in self.order(tier, plan, self.clock()):
                if dep.id in tried or not dep.admissible(self.clock()):
                    continue
                if plan.min_context and dep.spec.context_window <= plan.min_context:
                    continue
                tried.add(dep.id)
                info = self._take(dep, info)
                yield dep, info

    @staticmethod
    def _take(dep: Deployment, info: Attempt | None) -> Attempt:
        """A deployment chosen to try: a cooled-down one becomes the trial; count the failover."""
        if dep.state is not CircuitState.CLOSED:
            dep.state = CircuitState.HALF_OPEN
            dep.trial_running = True
        if info is None:
            return Attempt(dep)
        info.failovers += 1
        return info

    def _exhausted(self, plan: RoutePlan, last: ByenatosError | None, info: Attempt | None) -> ByenatosError:
        if last is None:
            names = ", ".join(s.id for tier in plan.tiers for s in tier)
            if plan.min_context:
                return ContextWindowExceededError(f"the prompt does not fit any model in this socket ({names})")
            return UpstreamUnavailableError(f"no healthy model to serve this request (tried: {names}; all are "
                                            "cooling down after errors)")
        if info is not None and (info.failovers or info.retries) and not isinstance(last, ContextWindowExceededError):
            tried = "; ".join(info.errors[-4:])
            last.message = f"{last.message} (after {info.retries} retries and {info.failovers} fallbacks: {tried})"
        return last


class _CallInFlight:
    """A non-streamed call: revoking it cancels the task awaiting the upstream."""

    __slots__ = ("revoked", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.revoked: str | None = None

    def revoke(self, reason: str) -> None:
        self.revoked = reason
        self.task.cancel(reason)


class RoutedStream(AsyncIterator[T]):
    """The stream after its first chunk: no retries; a revoked generation ends it cleanly.

    Revoking a stream cancels the consumer only while it is waiting inside this stream's
    `__anext__` (one task may consume several streams, and may be busy elsewhere); otherwise
    the next `__anext__` raises. A class rather than an async generator so that `aclose()`
    releases the deployment's slot even when the caller never started iterating.
    """

    def __init__(self, router: Router, plan: RoutePlan, dep: Deployment, first: Any, iterator: AsyncIterator[T],
                 hold: Hold | None = None) -> None:
        self._plan, self._dep, self._first, self._it = plan, dep, first, iterator
        self._hold = hold  # the slot's, given back with it
        self._waiting: asyncio.Task[Any] | None = None  # the consumer, while inside __anext__
        self._revoked: str | None = None
        self._closed = False
        self.deployment = dep
        if plan.generation is not None:
            plan.generation.track(self)

    def revoke(self, reason: str) -> None:
        self._revoked = reason
        if self._waiting is not None:
            self._waiting.cancel(reason)

    def __aiter__(self) -> RoutedStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        if self._revoked is not None:
            await self.aclose()
            raise self._swapped_out()
        first = self._first
        if first is not _EMPTY:
            self._first = _EMPTY
            return first
        task = self._waiting = asyncio.current_task()
        try:
            return await anext(self._it)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except asyncio.CancelledError:
            await self.aclose()
            if self._revoked is not None and task is not None and task.uncancel() == 0:
                raise self._swapped_out() from None
            raise
        except ByenatosError as e:
            self._dep.errors += 1
            self._dep.last_error = str(e)
            await self.aclose()
            raise
        finally:
            self._waiting = None

    def _swapped_out(self) -> SwappedOutError:
        spec = self._dep.spec
        return SwappedOutError(self._revoked or "the model was swapped", provider=spec.provider, model=spec.name)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._plan.generation is not None:
            self._plan.generation.untrack(self)
        self._dep.release(self._hold)
        await _aclose(self._it)


class _Empty:
    pass


_EMPTY = _Empty()


async def _aclose(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        try:
            await close()
        except (ByenatosError, RuntimeError):
            pass  # closing a broken or already-running stream: nothing more to release
