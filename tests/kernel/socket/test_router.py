"""The router over real drivers and fake upstreams on loopback: strategies, health, failover."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.errors import BadRequestError, OverloadedError, UpstreamUnavailableError
from app.kernel.events import HealthChanged
from app.kernel.socket.router import CircuitState, RoutePlan, RoutingStrategy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.upstream import Fault


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fleet(kernel):
    """Four fake OpenAI upstreams, registered as providers p0..p3 offering model `m`."""
    fakes = [await FakeOpenAI().start() for _ in range(4)]
    for i, fake in enumerate(fakes):
        fake.reply_text = f"from p{i}"
        kernel.registry.add_provider(f"p{i}", "openai", base_url=fake.api_base)
        kernel.registry.upsert_models(f"p{i}", [ModelSpec(id=f"p{i}/m", name="m", provider=f"p{i}")])
    kernel.router.clock = FakeClock()
    delays: list[float] = []

    async def no_sleep(d: float) -> None:  # backoff is recorded, not waited
        delays.append(d)

    kernel.router._sleep = no_sleep
    kernel.backoff_delays = delays
    try:
        yield fakes
    finally:
        for fake in fakes:
            await fake.stop()


def plan(kernel, *tiers: list[int], strategy=RoutingStrategy.ROUND_ROBIN, **spec_overrides) -> RoutePlan:
    specs = kernel.registry.all_models()
    return RoutePlan(tiers=[[specs[f"p{i}/m"] for i in tier] for tier in tiers], strategy=strategy, key="t")


def ask(text: str = "hi") -> ChatRequest:
    return ChatRequest(model="x", messages=[ChatMessage(role="user", content=text)])


async def run(kernel, p: RoutePlan, request: ChatRequest | None = None):
    req = request or ask()
    answer, info = await kernel.router.run(p, lambda dep: dep.driver.chat(req, dep.spec))
    return answer.message.content, info


async def test_round_robin_spreads_evenly(kernel, fleet):
    p = plan(kernel, [0, 1, 2])
    served = Counter([(await run(kernel, p))[0] for _ in range(9)])
    assert served == {"from p0": 3, "from p1": 3, "from p2": 3}


async def test_least_loaded_avoids_the_busy_one(kernel, fleet):
    fleet[0].chunk_delay = 0.01
    p = plan(kernel, [0, 1], strategy=RoutingStrategy.LEAST_LOADED)
    req = ask()
    busy, _ = await kernel.router.stream(plan(kernel, [0]), lambda dep: dep.driver.stream(req, dep.spec))
    try:
        served = [(await run(kernel, p))[0] for _ in range(4)]
    finally:
        await busy.aclose()
    assert served == ["from p1"] * 4


async def test_fastest_response_learns_latency(kernel, fleet):
    fleet[0].latency = 0.03
    p = plan(kernel, [0, 1], strategy=RoutingStrategy.FASTEST_RESPONSE)
    first = [(await run(kernel, p))[0] for _ in range(2)]  # each unmeasured one is tried once
    assert sorted(first) == ["from p0", "from p1"]
    assert [(await run(kernel, p))[0] for _ in range(5)] == ["from p1"] * 5


async def test_quality_and_cost_strategies(kernel, fleet):
    reg = kernel.registry
    reg.upsert_models("p0", [ModelSpec(id="p0/m", name="m", provider="p0", quality=0.9,
                                       input_cost_per_token=1e-5, output_cost_per_token=3e-5)])
    reg.upsert_models("p1", [ModelSpec(id="p1/m", name="m", provider="p1", quality=0.4,
                                       input_cost_per_token=1e-7, output_cost_per_token=2e-7)])
    best = plan(kernel, [0, 1], strategy=RoutingStrategy.HIGHEST_QUALITY)
    cheap = plan(kernel, [0, 1], strategy=RoutingStrategy.LOWEST_COST)
    assert {(await run(kernel, best))[0] for _ in range(3)} == {"from p0"}
    assert {(await run(kernel, cheap))[0] for _ in range(3)} == {"from p1"}


async def test_resource_aware_prefers_local_models_that_fit(kernel, fleet):
    reg = kernel.registry
    gb = 2**30
    reg.upsert_models("p0", [ModelSpec(id="p0/m", name="m", provider="p0")])  # cloud
    reg.upsert_models("p1", [ModelSpec(id="p1/m", name="m", provider="p1", local=True, memory_bytes=64 * gb)])
    reg.upsert_models("p2", [ModelSpec(id="p2/m", name="m", provider="p2", local=True, memory_bytes=1 * gb)])
    kernel.router._memory_free = lambda: 8 * gb
    p = plan(kernel, [0, 1, 2], strategy=RoutingStrategy.RESOURCE_AWARE)
    assert [d.id for d in kernel.router.order(p.tiers[0], p, 0)] == ["p2/m", "p0/m", "p1/m"]
    assert (await run(kernel, p))[0] == "from p2"


async def test_dead_primary_fails_over_without_an_error_and_is_then_skipped(kernel, fleet):
    await fleet[0].refuse()
    sub = kernel.events.subscribe()
    p = plan(kernel, [0], [1])
    text, info = await run(kernel, p)
    assert text == "from p1" and info.failovers == 1 and info.retries == 0  # refused: no retry
    assert kernel.backoff_delays == []
    health = sub.queue.get_nowait()
    assert isinstance(health, HealthChanged) and not health.ok and health.model == "p0/m"
    text, info = await run(kernel, plan(kernel, [0], [1]))
    assert text == "from p1" and info.failovers == 0  # circuit open: primary not even tried


async def test_cooled_down_backend_comes_back(kernel, fleet):
    fleet[0].fault = Fault(kind="status", status=503, times=3)
    p = plan(kernel, [0], [1])
    assert (await run(kernel, p))[0] == "from p1"  # 3 failures open the circuit
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])
    assert dep.state is CircuitState.OPEN
    assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p1"
    kernel.router.clock.now += dep.cooldown + 0.1  # cooldown over: one trial request
    assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p0"
    assert dep.state is CircuitState.CLOSED


async def test_failed_trial_doubles_the_cooldown(kernel, fleet):
    await fleet[0].refuse()
    await run(kernel, plan(kernel, [0], [1]))
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])
    first = dep.cooldown
    kernel.router.clock.now += first + 0.1
    assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p1"
    assert dep.cooldown == 2 * first and dep.state is CircuitState.OPEN


async def test_active_probe_closes_the_circuit_early(kernel, fleet):
    fleet[0].fault = Fault(kind="status", status=500, times=3)
    await run(kernel, plan(kernel, [0], [1]))
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])
    assert dep.state is CircuitState.OPEN
    assert await kernel.router.probe(dep)
    assert dep.state is CircuitState.CLOSED


async def test_retryable_errors_retry_with_backoff_then_fall_back(kernel, fleet):
    fleet[0].fault = Fault(kind="status", status=500)
    text, info = await run(kernel, plan(kernel, [0], [1]))
    assert text == "from p1"
    assert len([r for r in fleet[0].requests if r.path.endswith("/chat/completions")]) == 3  # 1 + 2 retries
    assert info.retries == 2 and len(kernel.backoff_delays) == 2


async def test_retry_after_is_honoured(kernel, fleet):
    fleet[0].fault = Fault(kind="status", status=429, times=1, headers={"Retry-After": "1"})
    text, info = await run(kernel, plan(kernel, [0]))
    assert text == "from p0" and info.retries == 1
    assert kernel.backoff_delays == [1.0]


async def test_bad_request_is_not_retried_nor_failed_over(kernel, fleet):
    fleet[0].fault = Fault(kind="status", status=400, message="temperature must be <= 2")
    with pytest.raises(BadRequestError, match="temperature"):
        await run(kernel, plan(kernel, [0], [1]))
    assert len(fleet[0].requests) == 1 and fleet[1].requests == []


async def test_auth_failure_falls_over_to_the_next_provider(kernel, fleet):
    fleet[0].api_key = "needed"
    assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p1"


async def test_context_overflow_moves_to_a_larger_window(kernel, fleet):
    reg = kernel.registry
    for i, window in enumerate((4096, 2048, 131072)):
        reg.upsert_models(f"p{i}", [ModelSpec(id=f"p{i}/m", name="m", provider=f"p{i}", context_window=window)])
    fleet[0].fault = Fault(kind="status", status=400, message="This model's maximum context length is 4096 tokens")
    text, _ = await run(kernel, plan(kernel, [0], [1], [2]))
    assert text == "from p2"  # p1's window is smaller than p0's: skipped
    assert fleet[1].requests == []


async def test_no_retry_after_the_first_token(kernel, fleet):
    fleet[0].fault = Fault(kind="disconnect", after_chunks=2)
    req = ask()
    chunks, _ = await kernel.router.stream(plan(kernel, [0], [1]), lambda dep: dep.driver.stream(req, dep.spec))
    got = []
    with pytest.raises(UpstreamUnavailableError):
        async for c in chunks:
            got.append(c.text())
    assert "".join(got)  # the caller had content before the error
    assert len(fleet[0].requests) == 1 and fleet[1].requests == []


async def test_stream_fails_over_before_the_first_token(kernel, fleet):
    await fleet[0].refuse()
    req = ask()
    chunks, info = await kernel.router.stream(plan(kernel, [0], [1]), lambda dep: dep.driver.stream(req, dep.spec))
    assert "".join([c.text() async for c in chunks]) == "from p1"
    assert info.deployment.id == "p1/m"


async def test_bounded_queue_answers_overloaded(kernel, fleet):
    fleet[0].chunk_delay = 0.01
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])
    dep.limit, dep.max_queue = 1, 1
    req = ask()
    holding, _ = await kernel.router.stream(plan(kernel, [0]), lambda d: d.driver.stream(req, d.spec))
    waiting = asyncio.create_task(run(kernel, plan(kernel, [0])))
    await asyncio.sleep(0)  # one loop turn: the task runs until it parks in the queue (no I/O before it)
    assert dep.waiting == 1
    with pytest.raises(OverloadedError):
        await run(kernel, plan(kernel, [0]))
    await holding.aclose()  # frees the slot: the queued request proceeds
    assert (await waiting)[0] == "from p0"
    assert dep.in_flight == 0 and dep.waiting == 0


async def test_full_queue_spills_to_the_next_candidate(kernel, fleet):
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])
    dep.limit, dep.max_queue = 1, 0
    fleet[0].chunk_delay = 0.01
    req = ask()
    holding, _ = await kernel.router.stream(plan(kernel, [0]), lambda d: d.driver.stream(req, d.spec))
    try:
        assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p1"
    finally:
        await holding.aclose()


# -- health that is true (issue 19) ----------------------------------------------------------------
def _deployment_state(kernel, model: str) -> dict:
    return next(d for d in kernel.socket_state()["deployments"] if d["model"] == model)


async def test_a_model_cooling_down_says_so_until_it_is_healthy_again(kernel, fleet):
    import time

    sub = kernel.events.subscribe()
    fleet[0].fault = Fault(kind="body", status=503, message='{"error": {"message": "model overloaded"}}', times=3)
    assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p1"
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])

    state = _deployment_state(kernel, "p0/m")
    assert state["health"] == "cooling" and state["state"] == "open"
    assert abs(state["until"] - (time.time() + dep.cooldown)) < 2 and state["open_for_s"] == dep.cooldown
    assert state["last_error"].startswith("model overloaded (HTTP 503 from provider p0)")
    [cooling] = [e for e in _events(sub) if isinstance(e, HealthChanged)]
    assert (cooling.ok, cooling.state, cooling.until) == (False, "cooling", state["until"])
    assert cooling.detail.startswith("model overloaded (HTTP 503 from provider p0)")

    kernel.router.clock.now += dep.cooldown + 0.1  # cooled down: a trial is due, still not "ok"
    assert _deployment_state(kernel, "p0/m")["health"] == "cooling"
    assert (await run(kernel, plan(kernel, [0], [1])))[0] == "from p0"  # the trial succeeds
    state = _deployment_state(kernel, "p0/m")
    assert (state["health"], state["until"], state["open_for_s"]) == ("ok", None, 0.0)
    [recovered] = [e for e in _events(sub) if isinstance(e, HealthChanged)]
    assert (recovered.ok, recovered.state, recovered.until) == (True, "ok", None)


async def test_a_failed_trial_says_how_much_longer_it_cools_down(kernel, fleet):
    sub = kernel.events.subscribe()
    await fleet[0].refuse()
    await run(kernel, plan(kernel, [0], [1]))
    first = [e for e in _events(sub) if isinstance(e, HealthChanged)]
    dep = kernel.router.deployment(kernel.registry.all_models()["p0/m"])
    kernel.router.clock.now += dep.cooldown + 0.1
    await run(kernel, plan(kernel, [0], [1]))  # the trial fails: twice the cooldown
    [again] = [e for e in _events(sub) if isinstance(e, HealthChanged)]
    assert len(first) == 1 and not again.ok and again.state == "cooling" and again.until > first[0].until
    assert _deployment_state(kernel, "p0/m")["until"] == again.until


def _events(sub):
    while not sub.queue.empty():
        yield sub.queue.get_nowait()
