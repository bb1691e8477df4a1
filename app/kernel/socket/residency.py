"""Which local models are resident, under a memory budget, with leases for the requests using them.

Every request to a local runtime (drivers with `manages_memory`: llama.cpp in-process,
Ollama) holds a `Lease` on its model while it runs. Loading a model that would break the
budget (bytes, or a number of models) first unloads the least recently used models that
no lease holds; a model with a lease — serving a request, a stream in progress — is never
evicted. When the budget cannot be met without evicting a busy model, `acquire` raises
`OverloadedError` (503, retryable: leases end within a request's time), unless the
manager was made with `allow_over_budget=True`, which loads anyway and logs it. A model
bigger than the whole budget is a `ConfigError` (nothing will ever make room for it).
Refusing is the default because going over risks swapping the user's desktop to a crawl.

For cloud drivers `acquire` returns a no-op lease without awaiting anything: it runs on
every request's hot path. For a local model already resident it is O(1) too; only a
load awaits, and concurrent acquires of one model share that one load.

Memory per model is `spec.memory_bytes` (the driver's estimate: weights plus KV cache),
else the model file's size, else 0 (then only `max_models` limits it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from app.kernel.canonical import ModelSpec
from app.kernel.drivers.base import Driver
from app.kernel.errors import ConfigError, OverloadedError
from app.kernel.events import EventBus, ModelEvicted, ModelLoaded, ModelLoadFailed, ModelLoading

log = logging.getLogger(__name__)

DEFAULT_BUDGET_FRACTION = 0.6  # of total RAM; the rest stays for the desktop and its apps

Progress = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class ResidentModel:
    """A loaded model as the UI and the socket see it."""

    id: str
    provider: str
    bytes: int
    leases: int  # requests using it now
    last_used: float  # wall-clock time of the last acquire or release


class _Entry:
    """A model that is resident or loading. Lives in the manager's LRU-ordered table."""

    __slots__ = ("bytes", "driver", "idle", "last_used", "leases", "loaded", "ready", "spec")

    def __init__(self, spec: ModelSpec, driver: Driver, size: int) -> None:
        self.spec = spec
        self.driver = driver
        self.bytes = size
        self.leases = 0
        self.last_used = time.time()
        self.loaded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle: asyncio.Event | None = None  # made when someone waits for the leases to end


class Lease:
    """A request's hold on a model: while any lease is held the model is not evicted.

    `async with lease:` or call `release()` (idempotent) when the request is over, in a
    `finally`: a lease never released pins its model until the process ends.
    """

    __slots__ = ("_entry", "_manager", "model_id", "released")

    def __init__(self, manager: ResidencyManager | None, entry: _Entry | None, model_id: str) -> None:
        self._manager = manager
        self._entry = entry
        self.model_id = model_id
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self._manager is not None and self._entry is not None:
            self._manager._release(self._entry)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Lease({self.model_id!r}, released={self.released})"


class ResidencyManager:
    def __init__(
        self,
        budget_bytes: int | None = None,
        max_models: int | None = None,
        events: EventBus | None = None,
        *,
        budget_fraction: float = DEFAULT_BUDGET_FRACTION,
        allow_over_budget: bool = False,
    ) -> None:
        """`budget_bytes` None: `budget_fraction` of total RAM. `max_models` None: no count limit."""
        if budget_bytes is None:
            import psutil

            budget_bytes = int(psutil.virtual_memory().total * budget_fraction)
        _check_limits(budget_bytes, max_models)
        self.budget_bytes = budget_bytes
        self.max_models = max_models
        self.allow_over_budget = allow_over_budget
        self.events = events or EventBus()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._unloading: dict[str, asyncio.Future[None]] = {}  # model id → done when unloaded
        self._tasks: set[asyncio.Task[None]] = set()

    # ── the request path ───────────────────────────────────────────────────

    async def acquire(self, spec: ModelSpec, driver: Driver) -> Lease:
        """Make sure the model is loaded and hold it for one request."""
        if not driver.manages_memory:
            return Lease(None, None, spec.id)
        entry = self._entries.get(spec.id)
        if entry is not None and entry.loaded:  # the common case: no await, nothing yields
            entry.leases += 1
            self._touch(entry)
            return Lease(self, entry, spec.id)
        if entry is None:
            entry = self._start_load(spec, driver, None)
        # counted from now on, so the model cannot be evicted between loading and serving
        entry.leases += 1
        try:
            await asyncio.shield(entry.ready)
        except BaseException:
            self._release(entry)
            raise
        self._touch(entry)
        return Lease(self, entry, spec.id)

    def _release(self, entry: _Entry) -> None:
        entry.leases -= 1
        self._touch(entry)
        if entry.leases == 0 and entry.idle is not None:
            entry.idle.set()

    def _touch(self, entry: _Entry) -> None:
        entry.last_used = time.time()
        if self._entries.get(entry.spec.id) is entry:
            self._entries.move_to_end(entry.spec.id)

    # ── loading and unloading ──────────────────────────────────────────────

    async def preload(self, spec: ModelSpec, driver: Driver, progress: Progress | None = None) -> None:
        """Load without holding the model (a BACKGROUND swap warming its target); same eviction rules."""
        if not driver.manages_memory:
            _report(progress, 1.0)
            return
        entry = self._entries.get(spec.id)
        if entry is not None and entry.loaded:
            self._touch(entry)
            _report(progress, 1.0)
            return
        if entry is None:
            await asyncio.shield(self._start_load(spec, driver, progress).ready)  # reports progress
            return
        _report(progress, 0.0)  # someone else's load is under way: share it
        await asyncio.shield(entry.ready)
        _report(progress, 1.0)

    async def evict(self, model_id: str, *, wait: bool = False, reason: str = "manual") -> bool:
        """Unload a model now. False if it was not resident.

        A model serving requests is not evicted: with `wait` this returns once its last
        lease ends (a GRACEFUL swap freeing the old model), else it raises OverloadedError.
        """
        entry = self._entries.get(model_id)
        if entry is None:
            return False
        if not entry.loaded:
            try:
                await asyncio.shield(entry.ready)
            except Exception:
                return False  # the load failed: nothing is resident
        while entry.leases > 0:
            if not wait:
                raise OverloadedError(
                    f"{model_id} is serving {entry.leases} request(s) and is not evicted mid-request",
                    provider=entry.spec.provider,
                    model=entry.spec.name,
                )
            entry.idle = entry.idle or asyncio.Event()
            entry.idle.clear()
            await entry.idle.wait()
        if self._entries.get(model_id) is not entry:
            return False  # evicted by someone else meanwhile
        del self._entries[model_id]
        await self._unload(entry, reason)
        return True

    async def set_limits(self, budget_bytes: int | None = None, max_models: int | None = None) -> list[str]:
        """New limits (memory pressure, settings); unloads idle models, oldest first, to meet them.

        Busy models stay even if that leaves the manager over its new limits; they become
        evictable when their requests end. Returns the ids unloaded.
        """
        budget = self.budget_bytes if budget_bytes is None else budget_bytes
        _check_limits(budget, max_models)
        self.budget_bytes, self.max_models = budget, max_models
        victims: list[_Entry] = []
        for entry in list(self._entries.values()):
            if self._fits(0, victims, extra_model=False):
                break
            if entry.loaded and entry.leases == 0:
                victims.append(entry)
        for victim in victims:
            del self._entries[victim.spec.id]
        await asyncio.gather(*(self._unload(v, "budget") for v in victims))
        return [v.spec.id for v in victims]

    def _start_load(self, spec: ModelSpec, driver: Driver, progress: Progress | None) -> _Entry:
        """Pick the models to evict and register the new one, synchronously, then load in a task.

        Deciding and reserving without an await in between keeps concurrent loads of
        different models from all counting the same free memory.
        """
        size = _model_bytes(spec)
        victims = self._make_room(spec, size)
        for victim in victims:
            del self._entries[victim.spec.id]
        entry = _Entry(spec, driver, size)
        self._entries[spec.id] = entry
        # its own task: a caller that gives up (client gone) does not abort a load others await
        task = asyncio.create_task(self._load(entry, victims, progress), name=f"load {spec.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return entry

    def _make_room(self, spec: ModelSpec, size: int) -> list[_Entry]:
        if size > self.budget_bytes and not self.allow_over_budget:
            raise ConfigError(
                f"{spec.id} needs {_gb(size)} of memory, more than the {_gb(self.budget_bytes)} budget "
                "for local models; raise the budget or use a smaller model or quantisation",
                provider=spec.provider,
                model=spec.name,
            )
        victims: list[_Entry] = []
        for entry in self._entries.values():  # least recently used first
            if self._fits(size, victims):
                break
            if entry.loaded and entry.leases == 0:
                victims.append(entry)
        if self._fits(size, victims):
            return victims
        busy = [e.spec.id for e in self._entries.values() if e not in victims]
        if self.allow_over_budget:
            log.warning("loading %s over the memory budget: %s are serving requests", spec.id, busy)
            return victims
        raise OverloadedError(
            f"no room to load {spec.id} ({_gb(size)}): {', '.join(busy)} are serving requests or loading "
            f"within a budget of {_gb(self.budget_bytes)}"
            + (f" and {self.max_models} model(s)" if self.max_models is not None else "")
            + "; try again when they finish",
            provider=spec.provider,
            model=spec.name,
        )

    def _fits(self, size: int, victims: list[_Entry], *, extra_model: bool = True) -> bool:
        count = len(self._entries) - len(victims) + int(extra_model)
        used = self.used_bytes - sum(v.bytes for v in victims) + size
        return used <= self.budget_bytes and (self.max_models is None or count <= self.max_models)

    async def _load(self, entry: _Entry, victims: list[_Entry], progress: Progress | None) -> None:
        spec, driver = entry.spec, entry.driver
        started = time.perf_counter()
        try:
            # free the victims' memory before the new weights come in
            await asyncio.gather(*(self._unload(v, "lru") for v in victims))
            if (unloading := self._unloading.get(spec.id)) is not None:
                await unloading  # this very model is still being unloaded: let that finish
            relay = _ProgressRelay(self.events, spec, progress)
            relay(0.0)
            if getattr(driver, "reports_load_progress", False):  # a runtime that can say how far it is
                await driver.load(spec, progress=relay)  # type: ignore[call-arg]
            else:
                await driver.load(spec)
        except BaseException as exc:
            if self._entries.get(spec.id) is entry:
                del self._entries[spec.id]
            self.events.publish(ModelLoadFailed(model=spec.id, provider=spec.provider, error=str(exc)))
            if isinstance(exc, asyncio.CancelledError):
                entry.ready.cancel()
                raise
            entry.ready.set_exception(exc)
            entry.ready.exception()  # retrieved: waiters get it; with none left, no "never retrieved" noise
            log.warning("loading %s failed: %s", spec.id, exc)
            return
        entry.loaded = True
        seconds = time.perf_counter() - started
        self.events.publish(
            ModelLoaded(model=spec.id, provider=spec.provider, bytes=entry.bytes, seconds=seconds)
        )
        if relay.last < 1.0:
            _report(progress, 1.0)
        entry.ready.set_result(None)

    async def _unload(self, entry: _Entry, reason: str) -> None:
        """Unload an entry already taken out of the table."""
        spec = entry.spec
        done = asyncio.get_running_loop().create_future()
        self._unloading[spec.id] = done
        try:
            await entry.driver.unload(spec)
        except Exception as exc:  # its memory may still be held, but the model is gone for us
            log.warning("unloading %s failed: %s", spec.id, exc)
        finally:
            if self._unloading.get(spec.id) is done:
                del self._unloading[spec.id]
            done.set_result(None)
        self.events.publish(ModelEvicted(model=spec.id, provider=spec.provider, reason=reason))

    async def aclose(self) -> None:
        """Wait for loads under way (the drivers unload everything when they close)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ── what is resident ───────────────────────────────────────────────────

    def loaded(self) -> list[ResidentModel]:
        """Resident models, least recently used first (loads under way not included)."""
        return [
            ResidentModel(
                id=e.spec.id, provider=e.spec.provider, bytes=e.bytes, leases=e.leases, last_used=e.last_used
            )
            for e in self._entries.values()
            if e.loaded
        ]

    def in_use(self, model_id: str) -> bool:
        entry = self._entries.get(model_id)
        return entry is not None and entry.leases > 0

    def is_loaded(self, model_id: str) -> bool:
        entry = self._entries.get(model_id)
        return entry is not None and entry.loaded

    @property
    def used_bytes(self) -> int:
        """Memory of resident and loading models, as budgeted."""
        return sum(e.bytes for e in self._entries.values())


class _ProgressRelay:
    """Load progress → ModelLoading events and the caller's callback."""

    def __init__(self, events: EventBus, spec: ModelSpec, callback: Progress | None) -> None:
        self._events, self._spec, self._callback = events, spec, callback
        self.last = -1.0

    def __call__(self, fraction: float) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if fraction <= self.last:
            return  # progress only moves forward
        self.last = fraction
        self._events.publish(
            ModelLoading(model=self._spec.id, provider=self._spec.provider, progress=fraction)
        )
        _report(self._callback, fraction)


def _model_bytes(spec: ModelSpec) -> int:
    if spec.memory_bytes:
        return spec.memory_bytes
    if spec.path:
        try:
            return os.path.getsize(spec.path)
        except OSError:
            pass  # the driver's load reports a missing file properly
    return 0


def _check_limits(budget_bytes: int, max_models: int | None) -> None:
    if budget_bytes <= 0:
        raise ConfigError(f"the memory budget for local models must be positive, not {budget_bytes}")
    if max_models is not None and max_models < 1:
        raise ConfigError(f"max_models must be 1 or more, not {max_models}")


def _report(progress: Progress | None, fraction: float) -> None:
    if progress is None:
        return
    try:
        progress(fraction)
    except Exception:  # a UI callback's bug must not fail the load
        log.exception("load progress callback failed")


def _gb(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"
