"""Automatic swap triggers: ERROR, PERFORMANCE, RESOURCE, SCHEDULE, WORKLOAD."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.config import ScheduleRule, WorkloadRule
from app.kernel.events import HealthChanged, SwapFinished
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.upstream import Fault


@pytest.fixture
async def three(kernel):
    """Providers a, b, c with model m; default socket a/m with fallbacks b/m, c/m."""
    fakes = {}
    for name in "abc":
        fake = await FakeOpenAI().start()
        fake.reply_text = f"from {name}"
        kernel.registry.add_provider(name, "openai", base_url=fake.api_base)
        kernel.registry.upsert_models(name, [ModelSpec(id=f"{name}/m", name="m", provider=name)])
        fakes[name] = fake
    await kernel.set_default_model("a/m")
    kernel.socket.configure("default", fallbacks=["b/m", "c/m"])
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()


def ask() -> ChatRequest:
    return ChatRequest(model="default", messages=[ChatMessage(role="user", content="hi")])


async def next_swap(sub) -> SwapFinished:
    async def wait() -> SwapFinished:
        async for event in sub:
            if isinstance(event, SwapFinished):
                return event
        raise AssertionError("event bus closed")

    return await asyncio.wait_for(wait(), 10)


async def test_error_trigger_swaps_in_a_healthy_fallback(kernel, three):
    sub = kernel.events.subscribe()
    await three["a"].refuse()
    assert (await kernel.chat(ask())).message.content == "from b"  # failover first, no error
    swap = await next_swap(sub)  # then the socket itself moves
    assert (swap.trigger, swap.from_model, swap.to_model) == ("error", "a/m", "b/m")
    config = kernel.socket.aliases()[0].config
    assert config.model == "b/m" and config.fallbacks == ("a/m", "c/m")


async def test_performance_trigger_leaves_a_slow_primary(kernel, three):
    kernel.settings.socket.latency_threshold_ms = {"default": 20}
    three["a"].latency = 0.05
    sub = kernel.events.subscribe()
    await kernel.chat(ask())
    swap = await next_swap(sub)
    assert (swap.trigger, swap.to_model) == ("performance", "b/m")


async def test_resource_trigger_moves_a_local_model_out_under_memory_pressure(kernel, three):
    await kernel.policy.stop()
    kernel.registry.upsert_models("a", [ModelSpec(id="a/m", name="m", provider="a", local=True,
                                                  memory_bytes=8 * 2**30)])
    kernel.settings.socket.min_available_memory_mb = 1024
    kernel.policy.memory_available = lambda: 4 * 2**30  # plenty: nothing happens
    assert await kernel.policy.tick() == []
    kernel.policy.memory_available = lambda: 200 * 2**20
    [swap] = await kernel.policy.tick()
    assert (swap.trigger.value, swap.current) == ("resource", "b/m")


async def test_schedule_trigger_follows_the_clock(kernel, three):
    await kernel.policy.stop()
    kernel.settings.socket.schedule = [ScheduleRule(alias="default", start="22:00", end="06:00", model="c/m")]
    kernel.policy.wall_clock = lambda: datetime(2026, 1, 1, 14, 0)
    assert await kernel.policy.tick() == []
    kernel.policy.wall_clock = lambda: datetime(2026, 1, 1, 23, 30)  # inside a window that wraps midnight
    [swap] = await kernel.policy.tick()
    assert (swap.trigger.value, swap.current) == ("schedule", "c/m")
    assert await kernel.policy.tick() == []  # already there: no swap again


async def test_workload_trigger_swaps_before_routing(kernel, three):
    kernel.settings.socket.workload = [WorkloadRule(alias="default", task="code", model="c/m")]
    answer = await kernel.chat(ask(), task="code")
    assert answer.message.content == "from c"
    assert kernel.socket.aliases()[0].last_swap.trigger.value == "workload"
    assert (await kernel.chat(ask(), task="chat")).message.content == "from c"  # no rule: stays


async def test_automatic_swaps_are_rate_limited_per_alias(kernel, three):
    await kernel.policy.stop()
    kernel.settings.socket.latency_threshold_ms = {"default": 1}
    kernel.router.deployment(kernel.registry.all_models()["a/m"]).latency_ms = 500
    first = await kernel.policy._on_latency("a/m")
    assert first is not None and first.current == "b/m"
    kernel.router.deployment(kernel.registry.all_models()["b/m"]).latency_ms = 500
    assert await kernel.policy._on_latency("b/m") is None  # within the cooldown


async def test_finished_requests_wake_the_policy_only_when_a_latency_rule_needs_them(kernel, three):
    """Every request publishes RequestFinished; the policy's queue takes them only while a
    latency threshold is set (otherwise each request would wake its task for nothing)."""
    queue = next(s for s in kernel.events._subs if s.accepts == kernel.policy._wants).queue
    await kernel.chat(ask())
    assert queue.qsize() == 0
    kernel.settings.socket.latency_threshold_ms = {"default": 10_000}
    await kernel.chat(ask())
    assert queue.qsize() == 1


# -- automatic swaps are told, and the user's model comes back (issue 19) -------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def events_of(sub, kind):
    out = []
    while not sub.queue.empty():
        event = sub.queue.get_nowait()
        if isinstance(event, kind):
            out.append(event)
    return out


@pytest.fixture
async def swapped(kernel, three):
    """`default` moved from a/m to b/m by the ERROR trigger (a refuses connections), the policy's
    loops stopped and its clock a fake one: the test ticks it."""
    await kernel.policy.stop()
    kernel.policy.clock = FakeClock()
    port = three["a"].port
    three["a"].fault = Fault(kind="status", status=503, message="model overloaded")
    sub = kernel.events.subscribe()
    for _ in range(3):  # three 503s open a/m's circuit; each request is served by b/m
        assert (await kernel.chat(ask())).message.content == "from b"
    [health] = [e for e in events_of(sub, HealthChanged) if not e.ok]
    assert await kernel.policy.on_event(health) is not None  # what the policy's listener does
    three["a"].fault = None
    await three["a"].refuse()  # down for now: its probes fail
    return {"fakes": three, "port": port}


async def test_an_automatic_swap_is_told_who_when_and_why(kernel, three):
    from app.kernel.events import AutoSwapped

    sub = kernel.events.subscribe()
    three["a"].fault = Fault(kind="status", status=503, message="model overloaded")
    for _ in range(3):
        await kernel.chat(ask())
    swap = await next_swap(sub)
    assert (swap.trigger, swap.to_model) == ("error", "b/m")
    [told] = [e for e in [*events_of(sub, AutoSwapped)] if e.alias == "default"] or [None]
    assert told is not None
    assert (told.from_model, told.to_model, told.trigger, told.chosen, told.returns) == (
        "a/m", "b/m", "error", "a/m", True)
    assert told.reason.startswith("a/m was failing: model overloaded (HTTP 503 from provider a)")
    assert '{"' not in told.reason  # the upstream's words, not its JSON
    assert told.detail == "model overloaded (HTTP 503 from provider a)"  # without the ids, for the UI

    [alias] = kernel.socket_state()["aliases"]
    auto = alias["auto_swapped"]
    assert (auto["from"], auto["to"], auto["trigger"], auto["returns"]) == ("a/m", "b/m", "error", True)
    assert auto["reason"] == told.reason and auto["detail"] == told.detail and abs(auto["at"] - told.ts) < 5
    assert kernel.socket_state()["auto_return"] == {"enabled": True, "after_s": 120.0}

    [logged, *_] = kernel.socket.history()
    assert (logged["trigger"], logged["from_model"], logged["to_model"], logged["chosen"]) == (
        "error", "a/m", "b/m", "a/m")
    assert logged["reason"] == told.reason and logged["chosen_fallbacks"] == ["b/m", "c/m"]


async def test_the_users_model_comes_back_once_it_has_been_healthy_for_a_while(kernel, swapped):
    from app.kernel.events import AutoSwapped

    clock, a = kernel.policy.clock, swapped["fakes"]["a"]
    after = kernel.settings.socket.return_after_s
    assert await kernel.policy.tick() == []  # a is down: its probe fails, nothing moves
    await a.start(port=swapped["port"])  # a is back
    assert await kernel.policy.tick() == []  # healthy from now on: the wait begins
    clock.now += after - 1
    assert await kernel.policy.tick() == []  # not long enough yet
    sub = kernel.events.subscribe()
    clock.now += 1
    [back] = await kernel.policy.tick()

    assert (back.trigger.value, back.previous, back.current) == ("recovery", "b/m", "a/m")
    config = kernel.socket.aliases()[0].config
    assert config.model == "a/m" and config.fallbacks == ("b/m", "c/m")  # the user's chain, restored
    assert kernel.socket_state()["aliases"][0]["auto_swapped"] is None
    [told] = events_of(sub, AutoSwapped)
    assert (told.trigger, told.from_model, told.to_model, told.chosen) == ("recovery", "b/m", "a/m", None)
    assert "a/m has been healthy again" in told.reason
    assert [r["trigger"] for r in kernel.socket.history(limit=2)] == ["recovery", "error"]
    assert (await kernel.chat(ask())).message.content == "from a"


async def test_a_failed_probe_starts_the_wait_again(kernel, swapped):
    clock, a = kernel.policy.clock, swapped["fakes"]["a"]
    after = kernel.settings.socket.return_after_s
    await a.start(port=swapped["port"])
    assert await kernel.policy.tick() == []
    clock.now += after - 10
    await a.refuse()  # down again before the wait is over
    assert await kernel.policy.tick() == []
    await a.start(port=swapped["port"])
    clock.now += 10
    assert await kernel.policy.tick() == []  # the wait starts again here
    clock.now += after - 1
    assert await kernel.policy.tick() == []
    clock.now += 1
    [back] = await kernel.policy.tick()
    assert back.current == "a/m"


async def test_with_auto_return_off_the_new_model_stays(kernel, swapped):
    kernel.settings.socket.auto_return = False
    clock, a = kernel.policy.clock, swapped["fakes"]["a"]
    await a.start(port=swapped["port"])
    for _ in range(3):
        assert await kernel.policy.tick() == []
        clock.now += 10 * kernel.settings.socket.return_after_s
    config = kernel.socket.aliases()[0].config
    assert config.model == "b/m"
    assert kernel.socket_state()["aliases"][0]["auto_swapped"]["from"] == "a/m"  # still told
    assert kernel.socket_state()["auto_return"]["enabled"] is False


async def test_an_automatic_swap_made_with_auto_return_off_says_it_stays(kernel, three):
    from app.kernel.events import AutoSwapped

    kernel.settings.socket.auto_return = False
    sub = kernel.events.subscribe()
    await three["a"].refuse()
    await kernel.chat(ask())
    await next_swap(sub)
    [told] = events_of(sub, AutoSwapped)
    assert told.returns is False and told.chosen == "a/m"
    assert kernel.socket_state()["aliases"][0]["auto_swapped"]["returns"] is False


async def test_a_manual_swap_is_the_users_new_choice(kernel, swapped):
    await kernel.socket.swap("default", "c/m")
    assert kernel.socket_state()["aliases"][0]["auto_swapped"] is None
    clock, a = kernel.policy.clock, swapped["fakes"]["a"]
    await a.start(port=swapped["port"])
    for _ in range(3):
        assert await kernel.policy.tick() == []  # nothing to come back to
        clock.now += 1000
    assert kernel.socket.aliases()[0].config.model == "c/m"


async def test_a_model_that_fails_again_soon_after_coming_back_waits_longer(kernel, swapped):
    clock, a = kernel.policy.clock, swapped["fakes"]["a"]
    after = kernel.settings.socket.return_after_s
    await a.start(port=swapped["port"])
    await kernel.policy.tick()
    clock.now += after
    [back] = await kernel.policy.tick()
    assert back.current == "a/m"
    clock.now += kernel.settings.socket.auto_swap_cooldown_s  # the next automatic swap is allowed
    result = await kernel.policy._on_failing("a/m", "model overloaded")  # failing again at once
    assert result is not None and result.current == "b/m"
    await kernel.policy.tick()
    clock.now += after
    assert await kernel.policy.tick() == []  # twice the wait this time
    clock.now += after
    [again] = await kernel.policy.tick()
    assert again.current == "a/m"


async def test_an_automatic_swap_is_still_known_after_a_restart(kernel, swapped):
    from app.kernel.kernel import Kernel

    await kernel.stop()
    restarted = await Kernel(kernel.paths).start()
    try:
        await restarted.policy.stop()
        [alias] = restarted.socket_state()["aliases"]
        assert alias["model"] == "b/m" and alias["auto_swapped"]["from"] == "a/m"
        restarted.policy.clock = FakeClock()
        await swapped["fakes"]["a"].start(port=swapped["port"])
        await restarted.policy.tick()
        restarted.policy.clock.now += restarted.settings.socket.return_after_s
        [back] = await restarted.policy.tick()
        assert back.current == "a/m" and restarted.socket.aliases()[0].config.fallbacks == ("b/m", "c/m")
    finally:
        await restarted.stop()
        await kernel.start()  # the fixture stops it


async def test_a_schedule_window_that_ends_brings_the_users_model_back(kernel, three):
    await kernel.policy.stop()
    kernel.settings.socket.schedule = [ScheduleRule(alias="default", start="22:00", end="06:00", model="c/m")]
    kernel.policy.wall_clock = lambda: datetime(2026, 1, 1, 23, 30)
    [swap] = await kernel.policy.tick()
    assert swap.current == "c/m"
    auto = kernel.socket_state()["aliases"][0]["auto_swapped"]
    assert auto["trigger"] == "schedule" and "from 22:00 to 06:00" in auto["reason"]
    kernel.policy.wall_clock = lambda: datetime(2026, 1, 2, 7, 0)
    [back] = await kernel.policy.tick()
    assert (back.trigger.value, back.current) == ("schedule", "a/m")
    assert kernel.socket_state()["aliases"][0]["auto_swapped"] is None


async def test_memory_pressure_swaps_out_and_back_when_the_model_fits_again(kernel, three):
    await kernel.policy.stop()
    kernel.policy.clock = FakeClock()
    kernel.registry.upsert_models("a", [ModelSpec(id="a/m", name="m", provider="a", local=True,
                                                  memory_bytes=2 * 2**30)])
    kernel.settings.socket.min_available_memory_mb = 1024
    kernel.policy.memory_available = lambda: 200 * 2**20
    [swap] = await kernel.policy.tick()
    assert swap.current == "b/m" and "free memory fell to 200 MB" in kernel.socket.history()[0]["reason"]
    kernel.policy.memory_available = lambda: 2 * 2**30  # above the floor, but a/m would not fit: stays
    kernel.policy.clock.now += 10_000
    assert await kernel.policy.tick() == []
    kernel.policy.memory_available = lambda: 4 * 2**30
    assert await kernel.policy.tick() == []
    kernel.policy.clock.now += kernel.settings.socket.return_after_s
    [back] = await kernel.policy.tick()
    assert (back.trigger.value, back.current) == ("recovery", "a/m")
