"""Automatic swap triggers: ERROR, PERFORMANCE, RESOURCE, SCHEDULE, WORKLOAD."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.config import ScheduleRule, WorkloadRule
from app.kernel.events import SwapFinished
from tests.fakes.openai_upstream import FakeOpenAI


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
