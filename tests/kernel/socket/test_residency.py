"""Resident local models under a budget, against real llama.cpp and tiny GGUF models."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.canonical import ChatRequest, ModelSpec
from app.kernel.drivers import create_driver
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.llamacpp import LlamaCppDriver
from app.kernel.errors import BadRequestError, ConfigError, OverloadedError
from app.kernel.events import Event, EventBus, ModelEvicted, ModelLoaded, ModelLoadFailed, ModelLoading
from app.kernel.socket.residency import Lease, ResidencyManager

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.llama


@pytest.fixture(scope="module")
def gguf_files(make_tiny_gguf):
    """Three models of one shape (so one size), different weights."""
    return [make_tiny_gguf(f"res-{x}", seed=10 + i) for i, x in enumerate("abc")]


@pytest.fixture
async def driver(gguf_files):
    driver = create_driver(
        ProviderConfig(id="local", kind="llamacpp", options={"models": [str(p) for p in gguf_files]})
    )
    assert isinstance(driver, LlamaCppDriver)
    yield driver
    await driver.aclose()


@pytest.fixture
async def specs(driver) -> tuple[ModelSpec, ModelSpec, ModelSpec]:
    by_name = {s.name: s for s in await driver.list_models()}
    a, b, c = by_name["res-a"], by_name["res-b"], by_name["res-c"]
    assert a.memory_bytes == b.memory_bytes == c.memory_bytes > 0
    return a, b, c


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


def drain(sub) -> list[Event]:
    """Events published so far (publishing is synchronous, so they are all queued)."""
    events = []
    while not sub.queue.empty():
        events.append(sub.queue.get_nowait())
    return events


def model_events(events: list[Event]) -> list[tuple[str, str]]:
    return [
        (e.name, e.model)
        for e in events
        if isinstance(e, ModelLoading | ModelLoaded | ModelEvicted | ModelLoadFailed)
    ]


async def use(manager: ResidencyManager, spec: ModelSpec, driver) -> None:
    """One request's worth of holding a model."""
    async with await manager.acquire(spec, driver):
        pass


def ask(max_tokens: int) -> ChatRequest:
    return ChatRequest(model="x", messages=[{"role": "user", "content": "hello"}], max_tokens=max_tokens)


# ── the hot path ─────────────────────────────────────────────────────────────


async def test_cloud_models_get_a_no_op_lease_without_yielding(bus):
    manager = ResidencyManager(budget_bytes=1, max_models=1, events=bus)
    cloud = create_driver(ProviderConfig(id="cloud", kind="openai", base_url="http://127.0.0.1:9/v1"))
    spec = ModelSpec(id="cloud/gpt-4o", name="gpt-4o", provider="cloud", memory_bytes=10**12)
    try:
        coro = manager.acquire(spec, cloud)
        with pytest.raises(StopIteration) as done:  # finished on its first step: nothing awaited
            coro.send(None)
        lease = done.value.value
        assert isinstance(lease, Lease) and lease.model_id == spec.id
        lease.release()
        assert manager.loaded() == [] and manager.used_bytes == 0 and not manager.in_use(spec.id)
    finally:
        await cloud.aclose()


async def test_a_resident_model_is_leased_without_yielding(driver, specs, bus):
    a, _, _ = specs
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    await use(manager, a, driver)
    coro = manager.acquire(a, driver)
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    lease = done.value.value
    assert manager.in_use(a.id)
    lease.release()
    lease.release()  # idempotent
    assert not manager.in_use(a.id)
    assert [m.leases for m in manager.loaded()] == [0]


# ── loading ──────────────────────────────────────────────────────────────────


async def test_acquire_loads_the_model_and_the_lease_serves_a_request(driver, specs, bus):
    a, _, _ = specs
    sub = bus.subscribe()
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    async with await manager.acquire(a, driver) as lease:
        assert lease.model_id == a.id
        assert await driver.loaded_models() == ["res-a"]
        assert manager.in_use(a.id)
        response = await driver.chat(ask(3), a)
        assert response.usage.completion_tokens == 3
    (resident,) = manager.loaded()
    assert (resident.id, resident.provider, resident.bytes, resident.leases) == (
        a.id,
        "local",
        a.memory_bytes,
        0,
    )
    events = drain(sub)
    assert model_events(events) == [("ModelLoading", a.id), ("ModelLoaded", a.id)]
    assert events[0].progress == 0.0
    assert events[1].bytes == a.memory_bytes and events[1].seconds > 0


async def test_concurrent_acquires_of_one_model_share_one_load(driver, specs, bus, monkeypatch):
    a, _, _ = specs
    loads = []
    real_load = driver.load

    async def counting_load(spec):
        loads.append(spec.id)
        await real_load(spec)

    monkeypatch.setattr(driver, "load", counting_load)
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    leases = await asyncio.gather(*(manager.acquire(a, driver) for _ in range(5)))
    assert loads == [a.id]
    assert [m.leases for m in manager.loaded()] == [5]
    for lease in leases:
        lease.release()
    assert not manager.in_use(a.id)


async def test_a_caller_giving_up_does_not_abort_a_load_others_wait_for(driver, specs, bus):
    a, _, _ = specs
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    first = asyncio.create_task(manager.acquire(a, driver))
    second = asyncio.create_task(manager.acquire(a, driver))
    await asyncio.sleep(0)  # one loop turn: both are waiting on the load
    first.cancel()
    lease = await second
    assert first.cancelled()
    assert [m.leases for m in manager.loaded()] == [1]  # the cancelled caller holds nothing
    lease.release()
    assert await driver.loaded_models() == ["res-a"]


async def test_a_failed_load_reaches_every_waiter_and_leaves_nothing_behind(driver, bus, tmp_path):
    bad_file = tmp_path / "broken.gguf"
    bad_file.write_bytes(b"not a gguf at all")
    bad = ModelSpec(id="local/broken", name="broken", provider="local", local=True, path=str(bad_file))
    sub = bus.subscribe()
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    results = await asyncio.gather(
        manager.acquire(bad, driver), manager.acquire(bad, driver), return_exceptions=True
    )
    assert all(isinstance(r, BadRequestError) for r in results), results
    assert "not a usable GGUF" in str(results[0])
    assert manager.loaded() == [] and manager.used_bytes == 0 and not manager.in_use(bad.id)
    events = drain(sub)
    assert model_events(events) == [("ModelLoading", bad.id), ("ModelLoadFailed", bad.id)]
    assert "not a usable GGUF" in events[1].error


# ── eviction ─────────────────────────────────────────────────────────────────


async def test_max_models_evicts_the_least_recently_used(driver, specs, bus):
    a, b, c = specs
    manager = ResidencyManager(budget_bytes=10**9, max_models=2, events=bus)
    await use(manager, a, driver)
    await use(manager, b, driver)
    await use(manager, a, driver)  # a is now the more recently used
    sub = bus.subscribe()
    await use(manager, c, driver)

    assert [m.id for m in manager.loaded()] == [a.id, c.id]  # least recently used first
    assert sorted(await driver.loaded_models()) == ["res-a", "res-c"]
    events = drain(sub)
    assert model_events(events) == [("ModelEvicted", b.id), ("ModelLoading", c.id), ("ModelLoaded", c.id)]
    assert events[0].reason == "lru"


async def test_a_byte_budget_evicts_until_the_new_model_fits(driver, specs, bus):
    a, b, c = specs
    size = a.memory_bytes
    manager = ResidencyManager(budget_bytes=2 * size + size // 2, events=bus)
    await use(manager, a, driver)
    await use(manager, b, driver)
    assert manager.used_bytes == 2 * size
    sub = bus.subscribe()
    await use(manager, c, driver)
    assert [m.id for m in manager.loaded()] == [b.id, c.id]
    assert manager.used_bytes == 2 * size
    assert model_events(drain(sub))[0] == ("ModelEvicted", a.id)

    small = ResidencyManager(budget_bytes=size, events=bus)  # room for one: each load evicts the last
    await use(small, a, driver)
    await use(small, b, driver)
    assert [m.id for m in small.loaded()] == [b.id]


async def test_a_model_streaming_an_answer_is_never_evicted(driver, specs, bus):
    a, b, _ = specs
    manager = ResidencyManager(budget_bytes=10**9, max_models=1, events=bus)
    lease = await manager.acquire(a, driver)
    stream = driver.stream(ask(24), a)
    first = await anext(stream)  # the stream is under way
    assert first.choices

    with pytest.raises(OverloadedError, match=r"res-a are serving requests") as refused:
        await manager.acquire(b, driver)
    assert refused.value.retryable
    with pytest.raises(OverloadedError, match="not evicted mid-request"):
        await manager.evict(a.id)

    rest = [chunk async for chunk in stream]  # it finishes, undisturbed
    assert rest[-1].choices[0].finish_reason == "length"
    assert rest[-1].usage.completion_tokens == 24
    assert [m.id for m in manager.loaded()] == [a.id]

    lease.release()
    await use(manager, b, driver)  # now a is idle and makes room
    assert [m.id for m in manager.loaded()] == [b.id]
    assert await driver.loaded_models() == ["res-b"]


async def test_over_budget_mode_loads_beside_a_busy_model(driver, specs, bus):
    a, b, _ = specs
    manager = ResidencyManager(budget_bytes=10**9, max_models=1, events=bus, allow_over_budget=True)
    async with await manager.acquire(a, driver):
        stream = driver.stream(ask(8), a)
        await anext(stream)
        await use(manager, b, driver)
        assert {m.id for m in manager.loaded()} == {a.id, b.id}
        assert [c async for c in stream][-1].choices[0].finish_reason == "length"
    assert len(manager.loaded()) == 2  # over the limit until the next load or new limits
    assert await manager.set_limits(max_models=1) == [b.id]  # a was released last
    assert await driver.loaded_models() == ["res-a"]


async def test_a_model_bigger_than_the_whole_budget_is_a_config_error(driver, specs, bus):
    a, _, _ = specs
    manager = ResidencyManager(budget_bytes=a.memory_bytes - 1, events=bus)
    with pytest.raises(ConfigError, match=r"more than the .* budget"):
        await manager.acquire(a, driver)
    assert await driver.loaded_models() == []
    lenient = ResidencyManager(budget_bytes=a.memory_bytes - 1, events=bus, allow_over_budget=True)
    await use(lenient, a, driver)
    assert [m.id for m in lenient.loaded()] == [a.id]


async def test_evict_can_wait_for_the_last_request(driver, specs, bus):
    a, _, _ = specs
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    lease = await manager.acquire(a, driver)
    sub = bus.subscribe()
    evicting = asyncio.create_task(manager.evict(a.id, wait=True))
    for _ in range(5):
        await asyncio.sleep(0)  # let it run as far as it can
    assert not evicting.done()
    assert await driver.loaded_models() == ["res-a"]
    lease.release()
    assert await evicting is True
    assert manager.loaded() == [] and await driver.loaded_models() == []
    (evicted,) = drain(sub)
    assert isinstance(evicted, ModelEvicted) and evicted.reason == "manual"
    assert await manager.evict(a.id) is False  # not resident any more


async def test_an_evicted_model_loads_again_on_the_next_request(driver, specs, bus):
    a, _, _ = specs
    sub = bus.subscribe()
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    await use(manager, a, driver)
    assert await manager.evict(a.id)
    async with await manager.acquire(a, driver):
        assert (await driver.chat(ask(2), a)).usage.completion_tokens == 2
    assert model_events(drain(sub)) == [
        ("ModelLoading", a.id),
        ("ModelLoaded", a.id),
        ("ModelEvicted", a.id),
        ("ModelLoading", a.id),
        ("ModelLoaded", a.id),
    ]


async def test_lower_limits_evict_idle_models_only(driver, specs, bus):
    a, b, _ = specs
    manager = ResidencyManager(budget_bytes=10**9, events=bus)
    await use(manager, a, driver)
    async with await manager.acquire(b, driver):
        assert await manager.set_limits(max_models=1) == [a.id]
        assert [m.id for m in manager.loaded()] == [b.id]
        assert await manager.set_limits(budget_bytes=1) == []  # b is busy: it stays
    assert await manager.set_limits(budget_bytes=1) == [b.id]
    assert await driver.loaded_models() == []
    with pytest.raises(ConfigError):
        await manager.set_limits(max_models=0)


# ── preloading ───────────────────────────────────────────────────────────────


async def test_preload_warms_a_model_without_holding_it(driver, specs, bus):
    a, b, _ = specs
    sub = bus.subscribe()
    manager = ResidencyManager(budget_bytes=10**9, max_models=1, events=bus)
    seen: list[float] = []
    await manager.preload(a, driver, progress=seen.append)
    assert seen == [0.0, 1.0]
    assert [m.id for m in manager.loaded()] == [a.id] and not manager.in_use(a.id)
    await manager.preload(a, driver, progress=seen.append)  # already warm: done at once
    assert seen == [0.0, 1.0, 1.0]
    await manager.preload(b, driver)  # no lease on a: it makes room
    assert [m.id for m in manager.loaded()] == [b.id]
    assert model_events(drain(sub)) == [
        ("ModelLoading", a.id),
        ("ModelLoaded", a.id),
        ("ModelEvicted", a.id),
        ("ModelLoading", b.id),
        ("ModelLoaded", b.id),
    ]


class ProgressReportingDriver(LlamaCppDriver):
    """A runtime that can say how far a load has got (llama.cpp's own loads cannot)."""

    reports_load_progress = True

    async def load(self, model: ModelSpec, progress=None) -> None:
        progress(0.5)
        await super().load(model)
        progress(1.0)


async def test_drivers_that_report_load_progress_are_relayed(gguf_files, bus):
    driver = ProgressReportingDriver(
        ProviderConfig(id="local", kind="llamacpp", options={"models": [str(gguf_files[0])]})
    )
    try:
        (spec,) = await driver.list_models()
        sub = bus.subscribe()
        manager = ResidencyManager(budget_bytes=10**9, events=bus)
        seen: list[float] = []
        await manager.preload(spec, driver, progress=seen.append)
        assert seen == [0.0, 0.5, 1.0]
        events = drain(sub)
        assert [(e.name, getattr(e, "progress", None)) for e in events] == [
            ("ModelLoading", 0.0),
            ("ModelLoading", 0.5),
            ("ModelLoading", 1.0),
            ("ModelLoaded", None),
        ]
    finally:
        await driver.aclose()


def test_limits_are_checked(bus):
    with pytest.raises(ConfigError, match="positive"):
        ResidencyManager(budget_bytes=0, events=bus)
    with pytest.raises(ConfigError, match="max_models"):
        ResidencyManager(budget_bytes=1, max_models=0, events=bus)
    default = ResidencyManager(events=bus)
    import psutil

    assert default.budget_bytes == int(psutil.virtual_memory().total * 0.6)
