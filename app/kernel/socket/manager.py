"""The AI socket: aliases → the model plugged in, its pool and fallback chain; hot swap.

An alias (`default`, `code`, `writing`…) names a *generation*: an immutable snapshot of
what serves it (primary model, extra pool members balanced with it, fallbacks, routing
strategy). A request takes the current generation when it starts and keeps it, which is
what makes swaps safe:

- GRACEFUL (default): the alias moves to a new generation; requests already running keep
  their old one and finish on the old model.
- IMMEDIATE: as graceful, then the old generation is revoked — its running requests are
  cancelled and end with a clean `SwappedOutError` (503, retryable).
- BACKGROUND: the target is loaded first (local runtimes) while the old model keeps
  serving; the alias switches only once the target is warm. A failed load leaves
  everything as it was.
- SESSION_AWARE: open sessions stay on the generation they started with until they end;
  new sessions and plain requests take the new one.

Swapping is an in-memory pointer change plus two small SQLite writes (the alias, a row of the
swap log), so the next request after `swap()` returns is already served by the new model.

Automatic swaps (every trigger but MANUAL, swap_policy.py) are never silent: each publishes
`AutoSwapped`, is logged (`history()`), and while an alias is away from the model the user put
in it, its state says so (`AliasState.auto_swapped`: from the user's choice, when, by which
trigger, why). A manual swap is the user's new choice and ends that; so does the swap back
to their choice (trigger RECOVERY, or any swap that lands on it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from app.kernel.canonical import ModelSpec
from app.kernel.errors import ByenatosError, ConfigError, ModelNotFoundError
from app.kernel.events import AutoSwapped, EventBus, SwapFailed, SwapFinished, SwapStarted
from app.kernel.models.registry import Registry
from app.kernel.socket.router import RoutePlan, RoutingStrategy

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "default"


class SwapStrategy(StrEnum):
    IMMEDIATE = "immediate"
    GRACEFUL = "graceful"
    BACKGROUND = "background"
    SESSION_AWARE = "session_aware"


class SwapTrigger(StrEnum):
    MANUAL = "manual"
    ERROR = "error"
    PERFORMANCE = "performance"
    RESOURCE = "resource"
    SCHEDULE = "schedule"
    WORKLOAD = "workload"
    RECOVERY = "recovery"  # back to the user's choice after an automatic swap (it is healthy again)


@dataclass(frozen=True, slots=True)
class AliasConfig:
    alias: str
    model: str  # the primary: the chip in the socket
    pool: tuple[str, ...] = ()  # more models balanced with the primary by `routing`
    fallbacks: tuple[str, ...] = ()  # tried in order when the pool cannot serve
    routing: RoutingStrategy = RoutingStrategy.ROUND_ROBIN

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "model": self.model, "pool": list(self.pool),
                "fallbacks": list(self.fallbacks), "routing": self.routing.value}


class Revocable(Protocol):
    def revoke(self, reason: str) -> None: ...


class Generation:
    """One alias's configuration between two swaps, and the requests running on it."""

    def __init__(self, config: AliasConfig, number: int) -> None:
        self.config = config
        self.number = number
        self.revoked = False
        self.revoked_reason = ""
        self.superseded_by: SwapStrategy | None = None
        self.sessions = 0  # open sessions pinned here (SESSION_AWARE)
        self._running: set[Revocable] = set()

    def track(self, request: Revocable) -> None:
        self._running.add(request)

    def untrack(self, request: Revocable) -> None:
        self._running.discard(request)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def revoke(self, reason: str) -> int:
        """Cancel every request running on this generation; they end with SwappedOutError."""
        self.revoked, self.revoked_reason = True, reason
        running = list(self._running)
        for request in running:
            request.revoke(reason)
        return len(running)


@dataclass(slots=True)
class SwapResult:
    alias: str
    previous: str | None
    current: str
    strategy: SwapStrategy
    trigger: SwapTrigger
    duration_ms: float
    cancelled: int = 0  # IMMEDIATE: requests cancelled
    still_running: int = 0  # GRACEFUL/SESSION_AWARE: requests finishing on the old model

    def to_dict(self) -> dict[str, Any]:
        return {"alias": self.alias, "previous": self.previous, "current": self.current,
                "strategy": self.strategy.value, "trigger": self.trigger.value,
                "duration_ms": round(self.duration_ms, 3), "cancelled": self.cancelled,
                "still_running": self.still_running}


@dataclass(frozen=True, slots=True)
class AutoSwap:
    """An alias away from the model the user put in it, since an automatic swap."""

    alias: str
    chosen: str  # the user's model: what the alias returns to
    current: str  # the model the automatic swap put in
    at: float  # when (unix time) the alias left the user's model
    trigger: SwapTrigger  # the last automatic swap's
    reason: str  # why, in words
    fallbacks: tuple[str, ...] = ()  # the user's fallback chain, restored on the way back
    returns: bool = False  # the policy brings the user's model back once it is healthy
    log_id: int | None = None  # the swap log's row that holds this record
    # The facts behind `reason` without the models' ids (the upstream's words, a latency): for a
    # UI that names models its own way. Not kept across a restart ("" then).
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.chosen, "to": self.current, "at": self.at, "trigger": self.trigger.value,
                "reason": self.reason, "detail": self.detail, "returns": self.returns}


@dataclass(slots=True)
class AliasState:
    config: AliasConfig
    generation: int
    in_flight: int
    last_swap: SwapResult | None = None
    pinned_sessions: int = 0
    auto_swapped: AutoSwap | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.config.to_dict(), "generation": self.generation, "in_flight": self.in_flight,
                "pinned_sessions": self.pinned_sessions,
                "last_swap": self.last_swap.to_dict() if self.last_swap else None,
                "auto_swapped": self.auto_swapped.to_dict() if self.auto_swapped else None}


# Persistence is a few callables so the socket stays independent of the table layout.
Loader = Callable[[], list[AliasConfig]]
Saver = Callable[[AliasConfig], None]
Deleter = Callable[[str], None]
Preloader = Callable[[ModelSpec], Awaitable[None]]
# The swap log: one row per swap (a dict of SWAP_LOG_FIELDS); the row id back.
LogWriter = Callable[[dict[str, Any]], int | None]
LogReader = Callable[[int, str | None], list[dict[str, Any]]]  # newest first, up to n, of one alias or all
SWAP_LOG_FIELDS = ("ts", "alias", "from_model", "to_model", "strategy", "trigger", "reason", "chosen",
                   "chosen_fallbacks", "returns")


@dataclass
class SocketStorage:
    load: Loader
    save: Saver
    delete: Deleter
    log: LogWriter = lambda entry: None
    history: LogReader = lambda limit, alias: []
    # The latest log row of each alias (what says whether it is away from the user's model).
    latest: Callable[[], list[dict[str, Any]]] = list
    # A record's saved fallback chain changed (the user edited it meanwhile): row id, new chain.
    update_fallbacks: Callable[[int, list[str]], None] = lambda row, fallbacks: None


class SocketManager:
    def __init__(
        self,
        registry: Registry,
        events: EventBus,
        storage: SocketStorage,
        *,
        initial_default: Callable[[], ModelSpec],
        preload: Preloader | None = None,
    ) -> None:
        self.registry = registry
        self.events = events
        self.storage = storage
        self._initial_default = initial_default
        self._preload = preload
        self._current: dict[str, Generation] = {}
        self._pinned: dict[tuple[str, int], Generation] = {}  # SESSION_AWARE generations still in use
        self._last_swap: dict[str, SwapResult] = {}
        self._auto: dict[str, AutoSwap] = {}  # aliases away from the user's model (see AutoSwap)
        self._locks: dict[str, asyncio.Lock] = {}
        self._numbers = 0

    def load(self) -> None:
        for config in self.storage.load():
            self._current[config.alias] = self._new_generation(config)
        for row in self.storage.latest():  # an automatic swap before a restart is still one
            alias, chosen = row.get("alias"), row.get("chosen")
            gen = self._current.get(alias or "")
            if not chosen or gen is None or gen.config.model != row.get("to_model"):
                continue
            try:
                trigger = SwapTrigger(row.get("trigger") or "")
            except ValueError:
                continue
            self._auto[alias] = AutoSwap(alias, chosen, gen.config.model, float(row.get("ts") or 0), trigger,
                                         str(row.get("reason") or ""), tuple(row.get("chosen_fallbacks") or ()),
                                         bool(row.get("returns")), row.get("id"))

    def _new_generation(self, config: AliasConfig) -> Generation:
        self._numbers += 1
        return Generation(config, self._numbers)

    # -- reading ---------------------------------------------------------------------------
    def is_alias(self, name: str) -> bool:
        return name in self._current or name in ("", DEFAULT_ALIAS)

    def generation(self, alias: str) -> Generation:
        alias = alias or DEFAULT_ALIAS
        gen = self._current.get(alias)
        if gen is None:
            if alias != DEFAULT_ALIAS:
                raise ModelNotFoundError(f"no socket alias {alias!r}")
            # The default socket is born on first use from the best available model.
            config = AliasConfig(DEFAULT_ALIAS, self._initial_default().id)
            self.storage.save(config)
            gen = self._current[alias] = self._new_generation(config)
        return gen

    def aliases(self) -> list[AliasState]:
        if DEFAULT_ALIAS not in self._current:
            try:
                self.generation(DEFAULT_ALIAS)
            except ByenatosError:
                pass  # no model at all yet: nothing to show
        pins: dict[str, int] = {}
        for (alias, _), g in self._pinned.items():
            pins[alias] = pins.get(alias, 0) + g.sessions
        return [
            AliasState(g.config, g.number, g.in_flight, self._last_swap.get(a), pins.get(a, 0), self._auto.get(a))
            for a, g in sorted(self._current.items())
        ]

    def auto_swapped(self, alias: str) -> AutoSwap | None:
        """The automatic swap the alias is in, if it is away from the user's model."""
        return self._auto.get(alias or DEFAULT_ALIAS)

    def auto_swaps(self) -> list[AutoSwap]:
        return list(self._auto.values())

    def history(self, limit: int = 100, alias: str | None = None) -> list[dict[str, Any]]:
        """The swap log, newest first: every swap (manual, automatic, back to the user's model)
        with `ts`, `alias`, `from_model`, `to_model`, `strategy`, `trigger`, `reason`, and for an
        automatic one the user's model it left (`chosen`) and whether it comes back by itself
        (`returns`). What the Activity view lists beside the requests."""
        return self.storage.history(limit, alias)

    def plan(self, alias: str, *, pinned: Generation | None = None) -> RoutePlan:
        """The route for a request to `alias` (a session passes the generation it is pinned to)."""
        gen = self.generation(alias)
        if pinned is not None and pinned is not gen and pinned.superseded_by is SwapStrategy.SESSION_AWARE:
            gen = pinned
        c = gen.config
        find = self.registry.find_model
        try:
            pool = [find(c.model), *(find(m) for m in c.pool)]
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"the model in socket {c.alias!r} ({c.model}) is no longer available; "
                f"swap another one in (`byenatos socket swap MODEL --alias {c.alias}`)"
            ) from None
        tiers = [pool]
        for fb in c.fallbacks:
            try:
                tiers.append([find(fb)])
            except ModelNotFoundError:
                continue  # a vanished fallback is skipped, not fatal
        return RoutePlan(tiers=tiers, strategy=c.routing, key=c.alias, generation=gen)

    def pin_session(self, alias: str) -> Generation:
        gen = self.generation(alias)
        gen.sessions += 1
        return gen

    def unpin_session(self, alias: str, gen: Generation) -> None:
        gen.sessions = max(0, gen.sessions - 1)
        if gen.sessions == 0:
            self._pinned.pop((alias, gen.number), None)

    # -- changing --------------------------------------------------------------------------
    async def swap(
        self,
        alias: str,
        model: str,
        strategy: SwapStrategy | str = SwapStrategy.GRACEFUL,
        trigger: SwapTrigger | str = SwapTrigger.MANUAL,
        *,
        reason: str = "",
        detail: str = "",
        fallbacks: list[str] | tuple[str, ...] | None = None,
        returns: bool = False,
    ) -> SwapResult:
        """Plug `model` into `alias`. The automatic triggers say why (`reason`), may set the
        fallback chain in the same step (`fallbacks`: the ERROR trigger keeps the failing model
        first in line) and whether the user's model comes back by itself (`returns`)."""
        alias = alias or DEFAULT_ALIAS
        strategy, trigger = SwapStrategy(strategy), SwapTrigger(trigger)
        _check_alias_name(alias)
        spec = self.registry.find_model(model)  # an unknown model fails before anything changes
        async with self._locks.setdefault(alias, asyncio.Lock()):
            started = time.perf_counter()
            old = self._current.get(alias)
            if old is None and alias == DEFAULT_ALIAS:
                try:
                    old = self.generation(alias)
                except ByenatosError:
                    old = None
            previous = old.config.model if old else None
            self.events.publish(SwapStarted(alias=alias, from_model=previous, to_model=spec.id,
                                            strategy=strategy.value, trigger=trigger.value))
            if strategy is SwapStrategy.BACKGROUND and self._preload is not None:
                try:
                    await self._preload(spec)  # the old model serves meanwhile
                except ByenatosError as e:
                    self.events.publish(SwapFailed(alias=alias, to_model=spec.id, error=str(e)))
                    raise
                started_switch = time.perf_counter()
            else:
                started_switch = started
            config = (replace(old.config, model=spec.id, pool=tuple(m for m in old.config.pool if m != spec.id))
                      if old else AliasConfig(alias, spec.id))
            auto = self._auto_after(alias, old.config if old else None, spec.id, trigger, reason, returns)
            if auto is not None and detail:
                auto = replace(auto, detail=detail)
            if fallbacks is not None:
                config = replace(config, fallbacks=tuple(fallbacks))
            elif auto is None and alias in self._auto and trigger is not SwapTrigger.MANUAL:
                config = replace(config, fallbacks=self._auto[alias].fallbacks)  # the user's chain, back
            new = self._new_generation(config)
            self._current[alias] = new  # from here on, new requests go to the new model
            cancelled = running = 0
            if old is not None:
                old.superseded_by = strategy
                if strategy is SwapStrategy.IMMEDIATE:
                    cancelled = old.revoke(f"the model in socket {alias!r} was swapped to {spec.id} (immediate)")
                else:
                    running = old.in_flight
                if strategy is SwapStrategy.SESSION_AWARE and old.sessions:
                    self._pinned[(alias, old.number)] = old
            self.storage.save(config)
            result = SwapResult(alias, previous, spec.id, strategy, trigger,
                                (time.perf_counter() - started_switch) * 1000, cancelled, running)
            self._last_swap[alias] = result
            row = self._log(alias, previous, spec.id, strategy, trigger, reason, auto)
            if auto is not None:
                self._auto[alias] = replace(auto, log_id=row)
            else:
                self._auto.pop(alias, None)
            self.events.publish(SwapFinished(alias=alias, from_model=previous, to_model=spec.id,
                                             strategy=strategy.value, trigger=trigger.value,
                                             duration_ms=result.duration_ms, cancelled=cancelled))
            if trigger is not SwapTrigger.MANUAL:
                self.events.publish(AutoSwapped(
                    alias=alias, from_model=previous, to_model=spec.id, trigger=trigger.value, reason=reason,
                    detail=detail,
                    chosen=auto.chosen if auto else None, returns=auto.returns if auto else False))
                log.warning("socket %s swapped automatically: %s → %s (%s: %s)", alias, previous, spec.id,
                            trigger.value, reason or "no reason given")
            else:
                log.info("socket %s: %s → %s (%s, %s)", alias, previous, spec.id, strategy.value, trigger.value)
            return result

    def _auto_after(self, alias: str, old: AliasConfig | None, model: str, trigger: SwapTrigger, reason: str,
                    returns: bool) -> AutoSwap | None:
        """The alias's AutoSwap record after a swap to `model`: None for a manual swap (the user's
        new choice), for the way back, and for any swap that lands on the user's model."""
        if trigger in (SwapTrigger.MANUAL, SwapTrigger.RECOVERY) or old is None:
            return None
        prior = self._auto.get(alias)
        chosen = prior.chosen if prior else old.model
        if model == chosen:
            return None
        fallbacks = prior.fallbacks if prior else old.fallbacks
        at = prior.at if prior else time.time()
        return AutoSwap(alias, chosen, model, at, trigger, reason, fallbacks, returns)

    def _log(self, alias: str, previous: str | None, model: str, strategy: SwapStrategy, trigger: SwapTrigger,
             reason: str, auto: AutoSwap | None) -> int | None:
        try:
            return self.storage.log({
                "ts": time.time(), "alias": alias, "from_model": previous, "to_model": model,
                "strategy": strategy.value, "trigger": trigger.value, "reason": reason,
                "chosen": auto.chosen if auto else None,
                "chosen_fallbacks": list(auto.fallbacks) if auto else None,
                "returns": auto.returns if auto else False,
            })
        except Exception:  # the log must not fail a swap that has happened
            log.exception("writing the swap log failed")
            return None

    def configure(
        self,
        alias: str,
        *,
        fallbacks: list[str] | None = None,
        pool: list[str] | None = None,
        routing: RoutingStrategy | str | None = None,
    ) -> AliasConfig:
        """Change an alias's fallback chain, pool or routing. Takes effect for new requests."""
        gen = self.generation(alias)
        config = gen.config
        if fallbacks is not None:
            config = replace(config, fallbacks=tuple(self.registry.find_model(m).id for m in fallbacks))
        if pool is not None:
            config = replace(config, pool=tuple(self.registry.find_model(m).id for m in pool if m != config.model))
        if routing is not None:
            try:
                config = replace(config, routing=RoutingStrategy(routing))
            except ValueError:
                raise ConfigError(f"unknown routing strategy {routing!r}; one of: "
                                  + ", ".join(s.value for s in RoutingStrategy)) from None
        new = self._new_generation(config)
        gen.superseded_by = SwapStrategy.GRACEFUL
        self._current[config.alias] = new
        self.storage.save(config)
        auto = self._auto.get(config.alias)
        if fallbacks is not None and auto is not None:
            # Edited while away from the user's model: the edit is the chain it comes back with.
            chain = tuple(m for m in config.fallbacks if m != auto.chosen)
            self._auto[config.alias] = replace(auto, fallbacks=chain)
            if auto.log_id is not None:
                self.storage.update_fallbacks(auto.log_id, list(chain))
        return config

    def remove(self, alias: str) -> None:
        if alias == DEFAULT_ALIAS:
            raise ConfigError("the default socket cannot be removed; swap another model into it instead")
        if self._current.pop(alias, None) is None:
            raise ModelNotFoundError(f"no socket alias {alias!r}")
        self._auto.pop(alias, None)
        self.storage.delete(alias)


def _check_alias_name(alias: str) -> None:
    if not alias.replace("-", "").replace("_", "").isalnum() or len(alias) > 64 or "/" in alias:
        raise ConfigError(f"socket alias {alias!r} must be letters, digits, '-' or '_' (e.g. code, writing)")


