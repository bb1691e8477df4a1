"""Hot swap through the kernel: strategies under concurrent streaming load, persistence."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.errors import ConfigError, ModelNotFoundError, SwappedOutError
from app.kernel.events import SwapFinished, SwapStarted
from app.kernel.kernel import Kernel
from app.kernel.socket.manager import SwapStrategy
from app.kernel.socket.router import RoutingStrategy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.upstream import Fault

CLIENTS = 50


@pytest.fixture
async def two_models(kernel):
    """Providers `a` and `b` (fake OpenAI upstreams) with model `m`; the default socket holds a/m."""
    fakes = {}
    for name in ("a", "b"):
        fake = await FakeOpenAI().start()
        fake.reply_text = f"answer from {name} " * 3
        kernel.registry.add_provider(name, "openai", base_url=fake.api_base)
        kernel.registry.upsert_models(name, [ModelSpec(id=f"{name}/m", name="m", provider=name)])
        fakes[name] = fake
    await kernel.set_default_model("a/m")
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()


def ask(model: str = "default", stream: bool = True) -> ChatRequest:
    return ChatRequest(model=model, messages=[ChatMessage(role="user", content="hi")], stream=stream)


async def open_streams(kernel: Kernel, n: int):
    """n streams that have each received their first chunk (so they are in flight)."""
    streams = [await kernel.stream(ask()) for _ in range(n)]
    firsts = [await anext(s) for s in streams]
    return streams, firsts


async def finish(stream, first) -> str:
    return first.text() + "".join([c.text() async for c in stream])


async def test_graceful_swap_under_load_drops_nothing(kernel, two_models):
    two_models["a"].chunk_delay = 0.005
    streams, firsts = await open_streams(kernel, CLIENTS)
    result = await kernel.socket.swap("default", "b/m", SwapStrategy.GRACEFUL)
    assert result.still_running == CLIENTS
    # new requests go to the new model at once, while the old streams keep going
    new = await kernel.chat(ask(stream=False))
    assert new.message.content.startswith("answer from b")
    texts = await asyncio.gather(*(finish(s, f) for s, f in zip(streams, firsts, strict=True)))
    assert texts == [two_models["a"].reply_text] * CLIENTS
    assert two_models["a"].streams_finished == CLIENTS


async def test_immediate_swap_cancels_in_flight_cleanly(kernel, two_models):
    two_models["a"].chunk_delay = 0.05
    streams, _ = await open_streams(kernel, CLIENTS)
    result = await kernel.socket.swap("default", "b/m", SwapStrategy.IMMEDIATE)
    assert result.cancelled == CLIENTS

    async def consume(stream) -> str:
        try:
            async for _ in stream:
                pass
        except SwappedOutError as e:
            return str(e)
        return "finished"

    outcomes = await asyncio.gather(*(consume(s) for s in streams))
    assert all("swapped to b/m" in o for o in outcomes), outcomes[:3]
    assert (await kernel.chat(ask(stream=False))).message.content.startswith("answer from b")


async def test_immediate_swap_cancels_a_waiting_non_streamed_request(kernel, two_models):
    two_models["a"].fault = Fault(kind="hang")  # the request hangs at the upstream until cancelled
    pending = asyncio.create_task(kernel.chat(ask(stream=False)))
    await two_models["a"].hanging.wait()
    await kernel.socket.swap("default", "b/m", SwapStrategy.IMMEDIATE)
    with pytest.raises(SwappedOutError):
        await pending
    await two_models["a"].cancelled.wait()  # and the upstream saw the request go away


async def test_background_swap_switches_only_once_warm(kernel, ollama_upstream, two_models):
    kernel.registry.add_provider("ollama", "ollama", base_url=ollama_upstream.url)
    await kernel.refresh_provider("ollama")
    target = next(m for m in kernel.list_models() if m.provider == "ollama")
    gate, entered = asyncio.Event(), asyncio.Event()
    original = kernel.socket._preload

    async def gated(spec):
        entered.set()
        await gate.wait()
        await original(spec)

    kernel.socket._preload = gated
    swap = asyncio.create_task(kernel.socket.swap("default", target.id, SwapStrategy.BACKGROUND))
    await entered.wait()
    assert kernel.default_model().id == "a/m"  # still serving the old one while loading
    assert (await kernel.chat(ask(stream=False))).message.content.startswith("answer from a")
    gate.set()
    result = await swap
    assert result.current == target.id
    assert target.name in ollama_upstream.loaded  # warm before the switch
    assert kernel.default_model().id == target.id


async def test_background_swap_that_fails_to_load_changes_nothing(kernel, ollama_upstream, two_models):
    kernel.registry.add_provider("ollama", "ollama", base_url=ollama_upstream.url)
    kernel.registry.upsert_models("ollama", [ModelSpec(id="ollama/ghost", name="ghost", provider="ollama",
                                                       local=True)])
    with pytest.raises(ModelNotFoundError):
        await kernel.socket.swap("default", "ollama/ghost", SwapStrategy.BACKGROUND)
    assert kernel.default_model().id == "a/m"


async def test_session_aware_swap_keeps_open_sessions_on_their_model(kernel, two_models):
    pinned = kernel.socket.pin_session("default")
    await kernel.socket.swap("default", "b/m", SwapStrategy.SESSION_AWARE)
    old = await kernel.chat(ask(stream=False), pinned=pinned)
    new = await kernel.chat(ask(stream=False))
    assert old.message.content.startswith("answer from a")
    assert new.message.content.startswith("answer from b")
    assert kernel.socket.aliases()[0].pinned_sessions == 1
    kernel.socket.unpin_session("default", pinned)
    assert kernel.socket.aliases()[0].pinned_sessions == 0


async def test_graceful_swap_does_not_keep_sessions_pinned(kernel, two_models):
    pinned = kernel.socket.pin_session("default")
    await kernel.socket.swap("default", "b/m", SwapStrategy.GRACEFUL)
    assert (await kernel.chat(ask(stream=False), pinned=pinned)).message.content.startswith("answer from b")


async def test_swap_events_and_persistence(kernel, two_models):
    sub = kernel.events.subscribe()
    await kernel.socket.swap("code", "b/m")
    started, finished = sub.queue.get_nowait(), sub.queue.get_nowait()
    assert isinstance(started, SwapStarted) and started.to_model == "b/m" and started.from_model is None
    assert isinstance(finished, SwapFinished) and finished.alias == "code"
    kernel.socket.configure("code", fallbacks=["a/m"], routing="least_loaded")
    await kernel.stop()
    again = await Kernel().start()
    try:
        states = {s.config.alias: s.config for s in again.socket.aliases()}
        assert states["code"].model == "b/m"
        assert states["code"].fallbacks == ("a/m",)
        assert states["code"].routing is RoutingStrategy.LEAST_LOADED
        assert states["default"].model == "a/m"
    finally:
        await again.stop()
        await kernel.start()  # the fixture stops it again


async def test_alias_with_a_dead_primary_fails_over_to_its_fallback(kernel, two_models):
    kernel.socket.configure("default", fallbacks=["b/m"])
    await two_models["a"].refuse()
    answer = await kernel.chat(ask(stream=False))
    assert answer.message.content.startswith("answer from b")


async def test_bad_swaps_change_nothing(kernel, two_models):
    with pytest.raises(ModelNotFoundError):
        await kernel.socket.swap("default", "nope/nothing")
    with pytest.raises(ConfigError):
        await kernel.socket.swap("bad alias!", "b/m")
    with pytest.raises(ConfigError, match="routing strategy"):
        kernel.socket.configure("default", routing="telepathic")
    with pytest.raises(ConfigError):
        kernel.socket.remove("default")
    assert kernel.default_model().id == "a/m"
