"""Preemption on the in-process llama.cpp driver, with real llama.cpp on a random-weight GGUF:
a less urgent generation pauses at a token boundary for a more urgent call and resumes with
nothing lost or repeated (greedy: the same text, token for token, as an uninterrupted run)."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import pytest

from app.kernel.canonical import ChatRequest
from app.kernel.drivers import create_driver
from app.kernel.drivers._llama_worker import _Saved
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.llamacpp import LlamaCppDriver
from app.kernel.events import EventBus
from app.kernel.scheduler import Program, ProgramClass, Scheduler, run_as
from app.kernel.socket.router import RoutePlan, Router

pytest.importorskip("llama_cpp")
pytestmark = [pytest.mark.llama, pytest.mark.slow]

AGENT = Program("agent#1", ProgramClass.BACKGROUND)
APP = Program("notes-app", ProgramClass.NORMAL)
POPUP = Program("popup", ProgramClass.INTERACTIVE)
LONG = 160  # tokens of the background generation: ~1 s on the model below


def ask(max_tokens: int, text: str, **extra) -> ChatRequest:
    return ChatRequest(model="local/m", messages=[{"role": "user", "content": text}], max_tokens=max_tokens,
                       temperature=extra.pop("temperature", 0.0), **extra)


BACKGROUND = ask(LONG, "Write a long story about the world.")
URGENT = ask(12, "hello model, what time is it?")
MIDDLE = ask(40, "you and that was for them")


@pytest.fixture(scope="module")
def model_path(make_tiny_gguf) -> Path:
    """~50 MB of f32 weights: a few ms a token, so a long generation is still running when the
    urgent call arrives."""
    return make_tiny_gguf("preempt-chat", seed=11, n_layers=4, n_embd=512, n_head=8, context_length=1024)


def make_driver(path: Path, **options) -> LlamaCppDriver:
    driver = create_driver(ProviderConfig(id="local", kind="llamacpp",
                                          options={"models": [str(path)], "n_threads": 1, **options}))
    assert isinstance(driver, LlamaCppDriver)
    return driver


@pytest.fixture
async def local(model_path):
    driver = make_driver(model_path)
    (spec,) = await driver.list_models()
    await driver.load(spec)
    yield driver, spec
    await driver.aclose()


class Run:
    """One streamed call as a program: its text, and when it ended relative to the others."""

    def __init__(self, finished: list[str]) -> None:
        self.finished = finished
        self.chunks = 0
        self.started = asyncio.Event()  # a few chunks are in: the generation is under way

        self.chunk = asyncio.Event()

    async def more(self, count: int = 3) -> None:
        """Until `count` more chunks came in."""
        target = self.chunks + count
        while self.chunks < target:
            self.chunk.clear()
            await asyncio.wait_for(self.chunk.wait(), 10)

    def got(self) -> None:
        self.chunks += 1
        self.chunk.set()
        if self.chunks == 3:
            self.started.set()

    async def stream(self, driver, spec, request: ChatRequest, program: Program, name: str) -> str:
        parts = []
        with run_as(program):
            async for chunk in driver.stream(request, spec):
                parts.append(chunk.text())
                self.got()
        self.finished.append(name)
        return "".join(parts)


async def alone(driver, spec, request: ChatRequest, program: Program) -> str:
    return await Run([]).stream(driver, spec, request, program, "alone")


def no_state_left(driver, spec) -> None:
    activity = driver.activity(spec)
    assert not activity.busy and activity.paused == 0 and activity.saved_bytes == 0
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, _Saved)]  # no saved state kept alive


async def test_an_interactive_call_pauses_a_background_generation_which_resumes_identically(local):
    driver, spec = local
    expected_bg = await alone(driver, spec, BACKGROUND, AGENT)
    expected_ui = await alone(driver, spec, URGENT, POPUP)
    assert driver.activity(spec).preemptions == 0

    finished: list[str] = []
    bg = Run(finished)
    task = asyncio.create_task(bg.stream(driver, spec, BACKGROUND, AGENT, "agent"))
    await bg.started.wait()
    ui = await Run(finished).stream(driver, spec, URGENT, POPUP, "popup")
    got_bg = await task

    assert finished == ["popup", "agent"]  # the urgent call did not wait for the long one
    assert ui == expected_ui
    assert got_bg == expected_bg  # greedy: token for token what it says when never paused
    activity = driver.activity(spec)
    assert activity.preemptions == 1
    report = activity.last_job  # the background generation ended last
    assert report.preempted == 1 and report.resumed_by == ["state"] and report.state_bytes > 0
    assert report.completion_tokens == LONG
    no_state_left(driver, spec)


async def test_two_preemptions_in_a_row_and_a_nested_one(local):
    driver, spec = local
    expected_bg = await alone(driver, spec, BACKGROUND, AGENT)
    expected_mid = await alone(driver, spec, MIDDLE, APP)
    expected_ui = await alone(driver, spec, URGENT, POPUP)

    finished: list[str] = []
    bg = Run(finished)
    background = asyncio.create_task(bg.stream(driver, spec, BACKGROUND, AGENT, "agent"))
    await bg.started.wait()
    assert await Run(finished).stream(driver, spec, URGENT, POPUP, "popup-1") == expected_ui
    await bg.more()  # the agent generates again...
    assert await Run(finished).stream(driver, spec, URGENT, POPUP, "popup-2") == expected_ui  # ...and is paused again
    await bg.more()
    # a normal call pauses the agent, and an interactive one pauses the normal call in turn
    mid = Run(finished)
    middle = asyncio.create_task(mid.stream(driver, spec, MIDDLE, APP, "app"))
    await mid.started.wait()
    assert await Run(finished).stream(driver, spec, URGENT, POPUP, "popup-3") == expected_ui
    assert await middle == expected_mid
    assert await background == expected_bg

    assert finished == ["popup-1", "popup-2", "popup-3", "app", "agent"]
    activity = driver.activity(spec)
    assert activity.last_job.preempted == 3  # the agent: twice for the popup, once for the app
    assert activity.preemptions == 4  # and the app once for the third popup
    assert driver._workers[spec.name].peak_saved_bytes >= 2 * 4096  # two states held at once, for a while
    no_state_left(driver, spec)


async def test_a_non_streaming_call_is_preempted_too_and_so_is_seeded_sampling(local):
    driver, spec = local
    seeded = ask(LONG, "Write a long story about the world.", temperature=0.9, seed=42)
    with run_as(AGENT):
        expected = (await driver.chat(seeded, spec)).choices[0].message.content
        chat = asyncio.create_task(driver.chat(seeded, spec))
    await asyncio.sleep(0.3)  # the chat is generating (its prompt takes a few ms)
    with run_as(POPUP):
        answer = await driver.chat(URGENT, spec)
    assert not chat.done()
    response = await chat
    # the sampler chain (and its RNG) is kept across the pause: even sampled output is the same
    assert response.choices[0].message.content == expected
    assert answer.usage.completion_tokens == 12
    assert driver.activity(spec).preemptions == 1
    no_state_left(driver, spec)


async def test_a_long_prompt_is_paused_between_two_of_its_pieces(local):
    driver, spec = local
    long_prompt = ask(24, " ".join(["the people who write about the world and the water"] * 12))
    expected = await alone(driver, spec, long_prompt, AGENT)
    expected_ui = await alone(driver, spec, URGENT, POPUP)
    await alone(driver, spec, MIDDLE, APP)  # the cache holds another context: no prefix reuse

    finished: list[str] = []
    background = asyncio.create_task(Run(finished).stream(driver, spec, long_prompt, AGENT, "agent"))
    while not driver.activity(spec).busy:  # noqa: ASYNC110 (the worker's state, no event)
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # the agent's prompt (pieces of 128 tokens) is being evaluated
    ui = await Run(finished).stream(driver, spec, URGENT, POPUP, "popup")
    got = await background

    assert finished == ["popup", "agent"]
    assert ui == expected_ui and got == expected
    report = driver.activity(spec).last_job
    assert report.preempted == 1 and report.sampled_tokens == 24
    assert report.prompt_tokens > 512
    (at,) = report.paused_at
    assert 0 < at < report.prompt_tokens  # between two pieces of the prompt, before its first token
    no_state_left(driver, spec)


async def test_a_cancelled_urgent_call_lets_the_paused_one_resume(local):
    driver, spec = local
    expected = await alone(driver, spec, BACKGROUND, AGENT)
    finished: list[str] = []
    bg = Run(finished)
    background = asyncio.create_task(bg.stream(driver, spec, BACKGROUND, AGENT, "agent"))
    await bg.started.wait()
    ui = Run(finished)
    urgent = asyncio.create_task(ui.stream(driver, spec, ask(120, "hello model"), POPUP, "popup"))
    await ui.started.wait()
    urgent.cancel()
    with pytest.raises(asyncio.CancelledError):
        await urgent
    assert await background == expected
    assert driver.activity(spec).last_job.preempted == 1
    no_state_left(driver, spec)


async def test_over_the_state_budget_a_paused_generation_is_re_prefilled(model_path):
    driver = make_driver(model_path, preempt_state_mb=0)
    (spec,) = await driver.list_models()
    try:
        expected = await alone(driver, spec, BACKGROUND, AGENT)
        finished: list[str] = []
        bg = Run(finished)
        task = asyncio.create_task(bg.stream(driver, spec, BACKGROUND, AGENT, "agent"))
        await bg.started.wait()
        await Run(finished).stream(driver, spec, URGENT, POPUP, "popup")
        assert await task == expected
        assert finished == ["popup", "agent"]
        report = driver.activity(spec).last_job
        assert report.resumed_by == ["prefill"]
        assert report.state_bytes < 64 * 1024  # the tokens and one row of logits, no KV cache
        no_state_left(driver, spec)
    finally:
        await driver.aclose()


async def test_cancelling_a_paused_generation_frees_it_at_once(local):
    driver, spec = local
    expected_ui = await alone(driver, spec, ask(120, "hello model"), POPUP)
    finished: list[str] = []
    bg = Run(finished)
    background = asyncio.create_task(bg.stream(driver, spec, BACKGROUND, AGENT, "agent"))
    await bg.started.wait()
    ui = Run(finished)
    urgent = asyncio.create_task(ui.stream(driver, spec, ask(120, "hello model"), POPUP, "popup"))
    await ui.started.wait()  # the agent is paused under the popup's generation now
    assert driver.activity(spec).paused == 1 and driver.activity(spec).saved_bytes > 0

    chunks_when_cancelled = bg.chunks
    background.cancel()
    started = time.perf_counter()
    with pytest.raises(asyncio.CancelledError):
        await background
    # its caller went at once: it did not wait for the popup to finish, and its state is gone
    assert not urgent.done()
    assert time.perf_counter() - started < 0.5
    assert driver.activity(spec).saved_bytes == 0

    assert await urgent == expected_ui  # the urgent call is unaffected
    assert bg.chunks == chunks_when_cancelled
    await asyncio.sleep(0.05)  # the paused frames unwind once the popup is done
    assert driver.activity(spec).last_job.cancelled
    no_state_left(driver, spec)
    # and the model serves the next call normally
    assert await alone(driver, spec, URGENT, POPUP) == await alone(driver, spec, URGENT, POPUP)


async def test_without_preemption_calls_are_only_ordered(model_path):
    driver = make_driver(model_path, preempt=False)
    (spec,) = await driver.list_models()
    assert driver.preemptible is False  # the router then schedules between calls only
    try:
        finished: list[str] = []
        bg = Run(finished)
        task = asyncio.create_task(bg.stream(driver, spec, BACKGROUND, AGENT, "agent"))
        await bg.started.wait()
        await Run(finished).stream(driver, spec, URGENT, POPUP, "popup")
        await task
        assert finished == ["agent", "popup"]
        assert driver.activity(spec).preemptions == 0
    finally:
        await driver.aclose()


# ── through the router: the deployment's slot ────────────────────────────────


def routed(driver, spec, limit: int):
    router = Router(lambda _p: driver, EventBus(), scheduler=Scheduler("las"))
    dep = router.deployment(spec)
    dep.limit = limit
    assert dep.preemptible
    return router, RoutePlan(tiers=[[spec]], key="t"), dep


async def routed_stream(router, plan, request: ChatRequest, program: Program, run: Run, name: str) -> str:
    parts = []
    with run_as(program):
        stream, _info = await router.stream(plan, lambda d: d.driver.stream(request, d.spec))
        try:
            async for chunk in stream:
                parts.append(chunk.text())
                run.got()
        finally:
            await stream.aclose()
    run.finished.append(name)
    return "".join(parts)


async def test_a_full_deployment_lends_the_background_slot_to_the_interactive_call(local):
    driver, spec = local
    expected = await alone(driver, spec, BACKGROUND, AGENT)
    router, plan, dep = routed(driver, spec, limit=1)

    finished: list[str] = []
    bg = Run(finished)
    background = asyncio.create_task(routed_stream(router, plan, BACKGROUND, AGENT, bg, "agent"))
    await bg.started.wait()
    assert dep.in_flight == 1  # every slot is held by the agent
    with run_as(POPUP):
        answer, _ = await router.run(plan, lambda d: d.driver.chat(URGENT, d.spec))
    finished.append("popup")
    assert await background == expected
    assert finished == ["popup", "agent"]
    assert answer.usage.completion_tokens == 12
    assert dep.in_flight == 0 and dep.waiting == 0 and not dep._lent  # no slot leaked
    assert dep.wait_queue.snapshot()["handed_over"] == 1  # the agent's slot went to the popup
    no_state_left(driver, spec)


async def test_cancelling_the_paused_call_through_the_router_frees_its_slot(local):
    driver, spec = local
    router, plan, dep = routed(driver, spec, limit=1)
    finished: list[str] = []
    bg = Run(finished)
    background = asyncio.create_task(routed_stream(router, plan, BACKGROUND, AGENT, bg, "agent"))
    await bg.started.wait()
    ui = Run(finished)
    urgent = asyncio.create_task(routed_stream(router, plan, ask(120, "hello model"), POPUP, ui, "popup"))
    await ui.started.wait()
    assert driver.activity(spec).paused == 1

    background.cancel()
    with pytest.raises(asyncio.CancelledError):
        await background
    assert dep.in_flight == 1  # the popup's slot (the one the agent lent it); the agent has none left
    await urgent
    assert dep.in_flight == 0 and dep.waiting == 0 and not dep._lent
    await asyncio.sleep(0.05)
    no_state_left(driver, spec)
