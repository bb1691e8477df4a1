"""The in-process GGUF driver against real llama.cpp and tiny random-weight models.

What random weights say is noise; these tests assert on what the driver controls: token
counts, finish reasons, stream structure, memory, cancellation, threading and errors.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import psutil
import pytest

from app.kernel.canonical import ChatChunk, ChatRequest, ModelSpec, Repository
from app.kernel.drivers import create_driver
from app.kernel.drivers._llama_worker import _Mailbox
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.llamacpp import LlamaCppDriver
from app.kernel.errors import (
    BadRequestError,
    ConfigError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotFoundError,
    NotSupportedError,
)

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.llama


def make_driver(**options) -> LlamaCppDriver:
    driver = create_driver(ProviderConfig(id="local", kind="llamacpp", options=options))
    assert isinstance(driver, LlamaCppDriver)
    return driver


def ask(max_tokens: int, text: str = "hello world", **extra) -> ChatRequest:
    return ChatRequest(
        model="local/tiny-chat", messages=[{"role": "user", "content": text}], max_tokens=max_tokens, **extra
    )


@pytest.fixture
async def driver(tiny_gguf):
    driver = make_driver(models=[str(tiny_gguf)])
    yield driver
    await driver.aclose()


@pytest.fixture
async def spec(driver) -> ModelSpec:
    (spec,) = await driver.list_models()
    return spec


@pytest.fixture(scope="session")
def big_gguf(make_tiny_gguf) -> Path:
    """~50 MB of f32 weights: enough for memory to show and for generation to take a while."""
    return make_tiny_gguf("big-chat", seed=7, n_layers=4, n_embd=512, n_head=8)


# ── discovery ────────────────────────────────────────────────────────────────


async def test_list_models_reads_each_files_context_window(tiny_gguf, second_tiny_gguf):
    driver = make_driver(models=[str(tiny_gguf)], dirs=[str(second_tiny_gguf.parent)])
    specs = {s.id: s for s in await driver.list_models()}

    assert set(specs) == {"local/tiny-chat", "local/tiny-chat-b"}
    assert specs["local/tiny-chat"].context_window == 512
    assert specs["local/tiny-chat-b"].context_window == 1024
    for s, path in ((specs["local/tiny-chat"], tiny_gguf), (specs["local/tiny-chat-b"], second_tiny_gguf)):
        assert s.local and s.repository is Repository.LOCAL and s.provider == "local"
        assert s.path == str(path)
        # the weights plus a KV cache for the whole window
        assert s.memory_bytes > path.stat().st_size
    assert await driver.loaded_models() == []  # listing loads nothing


async def test_context_cap_option_limits_the_window(tiny_gguf, second_tiny_gguf):
    driver = make_driver(models=[str(tiny_gguf), str(second_tiny_gguf)], n_ctx=256)
    assert [s.context_window for s in await driver.list_models()] == [256, 256]


async def test_list_models_skips_files_that_are_not_models(tmp_path, tiny_gguf):
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    (tmp_path / "noise.gguf").write_bytes(b"not a gguf at all")
    (tmp_path / "mmproj-vision.gguf").write_bytes(tiny_gguf.read_bytes())
    (tmp_path / "good.gguf").write_bytes(tiny_gguf.read_bytes())

    specs = await make_driver(dirs=[str(tmp_path)]).list_models()

    assert [s.name for s in specs] == ["good"]


# ── generation ───────────────────────────────────────────────────────────────


async def test_chat_returns_usage_and_stops_at_max_tokens(driver, spec):
    response = await driver.chat(ask(8), spec)

    assert response.finish_reason == "length"
    assert response.usage.completion_tokens == 8
    assert response.usage.prompt_tokens > 5  # the ChatML wrapping alone is more than that
    assert response.usage.total_tokens == response.usage.prompt_tokens + 8
    assert isinstance(response.message.content, str) and response.message.content
    assert response.message.role == "assistant"
    assert await driver.loaded_models() == ["tiny-chat"]  # loaded on demand


async def test_stream_delivers_chunks_as_they_are_generated(driver, spec):
    chunks: list[ChatChunk] = []
    busy_at_first_text = None
    async for chunk in driver.stream(ask(200), spec):
        if chunk.text() and busy_at_first_text is None:
            busy_at_first_text = driver.activity(spec).busy
        chunks.append(chunk)

    # the first text reached us while the model was still generating: not buffered
    assert busy_at_first_text is True
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, last = chunks
    assert all(c.choices[0].finish_reason is None and c.usage is None for c in body)
    assert last.choices[0].finish_reason == "length"
    assert last.usage.completion_tokens == 200
    assert last.usage.prompt_tokens > 5
    # the tiny model emits only plain-text tokens: one token, one chunk
    assert sum(1 for c in body if c.text()) == 200
    assert len({c.id for c in chunks}) == 1


async def test_stream_and_chat_agree_on_prompt_tokens(driver, spec):
    response = await driver.chat(ask(4), spec)
    chunks = [c async for c in driver.stream(ask(4), spec)]
    assert chunks[-1].usage == response.usage


async def test_two_models_load_side_by_side(tiny_gguf, second_tiny_gguf):
    driver = make_driver(models=[str(tiny_gguf), str(second_tiny_gguf)])
    try:
        a, b = await driver.list_models()
        ra, rb = await asyncio.gather(driver.chat(ask(3), a), driver.chat(ask(5), b))
        assert (ra.model, ra.usage.completion_tokens) == ("tiny-chat", 3)
        assert (rb.model, rb.usage.completion_tokens) == ("tiny-chat-b", 5)
        assert sorted(await driver.loaded_models()) == ["tiny-chat", "tiny-chat-b"]
        await driver.unload(a)
        assert await driver.loaded_models() == ["tiny-chat-b"]
    finally:
        await driver.aclose()
    assert await driver.loaded_models() == []


async def test_embeddings_one_vector_per_text(driver, spec):
    result = await driver.embed(["hello world", "the model", "hello world"], spec)

    assert len(result.vectors) == 3
    assert {len(v) for v in result.vectors} == {64}  # the model's embedding width
    assert result.vectors[0] == pytest.approx(result.vectors[2], abs=1e-5)
    assert result.vectors[0] != pytest.approx(result.vectors[1], abs=1e-3)
    assert result.usage.prompt_tokens > 3
    assert await driver.loaded_models() == ["tiny-chat"]
    # chat still works beside the embedding instance, and unload frees both
    assert (await driver.chat(ask(2), spec)).usage.completion_tokens == 2
    await driver.unload(spec)
    assert await driver.loaded_models() == []
    assert (await driver.embed([], spec)).vectors == []
    with pytest.raises(BadRequestError):
        await driver.embed([""], spec)


# ── memory ───────────────────────────────────────────────────────────────────


def rss() -> int:
    return psutil.Process().memory_info().rss


async def test_unload_gives_the_memory_back(big_gguf, tiny_gguf):
    driver = make_driver(models=[str(big_gguf), str(tiny_gguf)])
    try:
        big, tiny = await driver.list_models()
        # warm-up: importing llama.cpp and starting threads costs memory once, not per model
        await driver.chat(ask(2), tiny)
        await driver.unload(tiny)
        size = big_gguf.stat().st_size

        before = rss()
        await driver.load(big)
        await driver.chat(ask(2), big)
        loaded = rss()
        await driver.unload(big)
        after = rss()

        assert loaded - before > 0.8 * size, (
            f"loading {size / 1e6:.0f} MB raised RSS by {(loaded - before) / 1e6:.0f} MB"
        )
        assert loaded - after > 0.8 * size, (
            f"unload freed only {(loaded - after) / 1e6:.0f} MB of {size / 1e6:.0f}"
        )
        assert await driver.loaded_models() == []
    finally:
        await driver.aclose()


async def test_concurrent_loads_load_once(driver, spec):
    await asyncio.gather(driver.load(spec), driver.load(spec), driver.chat(ask(1), spec))
    assert await driver.loaded_models() == ["tiny-chat"]
    assert driver.activity(spec).jobs_done == 1


# ── cancellation ─────────────────────────────────────────────────────────────


@pytest.fixture
async def big(big_gguf):
    """A driver and the spec of the ~50 MB model: a few ms a token, so 200 tokens take a
    while and "stopped early" is unmistakable even though the stream batches wake-ups."""
    driver = make_driver(models=[str(big_gguf)])
    (spec,) = await driver.list_models()
    yield driver, spec
    await driver.aclose()


async def test_closing_the_stream_stops_generation(big):
    driver, spec = big
    stream = driver.stream(ask(200), spec)
    texts = 0
    async for chunk in stream:
        texts += bool(chunk.text())
        if texts == 2:
            break
    await stream.aclose()

    activity = driver.activity(spec)
    assert not activity.busy  # the worker let go of the model before aclose() returned
    assert activity.last_job.cancelled
    assert activity.last_job.sampled_tokens < 50  # of 200 asked for


async def test_cancelling_the_consumer_task_stops_generation(big):
    driver, spec = big
    got_two = asyncio.Event()

    async def consume() -> None:
        texts = 0
        async for chunk in driver.stream(ask(200), spec):
            texts += bool(chunk.text())
            if texts == 2:
                got_two.set()

    task = asyncio.create_task(consume())
    await got_two.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    activity = driver.activity(spec)
    assert not activity.busy
    assert activity.last_job.cancelled
    assert activity.last_job.sampled_tokens < 50


async def test_a_chat_cancelled_while_queued_never_runs(driver, spec):
    holder = driver.stream(ask(200), spec)
    await anext(holder)  # the model is busy with this stream now
    chat = asyncio.create_task(driver.chat(ask(200), spec))
    await asyncio.sleep(0)  # let the chat reach the model's queue (ordering only, no waiting)
    chat.cancel()
    with pytest.raises(asyncio.CancelledError):
        await chat
    await holder.aclose()

    activity = driver.activity(spec)
    assert activity.jobs_done == 1  # the stream only: the cancelled chat never reached the model
    assert not activity.busy


# ── concurrency and the event loop ───────────────────────────────────────────


async def test_requests_to_one_model_run_one_after_the_other(driver, spec):
    await driver.load(spec)
    jobs_done_at_first_chunk: list[int] = []

    async def run(n: int) -> ChatChunk:
        last = None
        async for chunk in driver.stream(ask(n), spec):
            if last is None:
                jobs_done_at_first_chunk.append(driver.activity(spec).jobs_done)
            last = chunk
        return last

    a, b = await asyncio.gather(run(40), run(30))

    assert (a.usage.completion_tokens, b.usage.completion_tokens) == (40, 30)
    assert a.choices[0].finish_reason == b.choices[0].finish_reason == "length"
    # the second request started only after the first had finished on the model: when its first
    # chunk is read, the first job is done (the second may be done too: a short job can finish in
    # the model's thread before the event loop reads its first chunk)
    first, second = sorted(jobs_done_at_first_chunk)
    assert first == 0 and second >= 1


async def test_event_loop_keeps_running_during_load_and_generation(big_gguf):
    driver = make_driver(models=[str(big_gguf)])
    beats: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            beats.append(time.perf_counter())
            await asyncio.sleep(0.002)

    ticker = asyncio.create_task(heartbeat())
    try:
        (spec,) = await driver.list_models()
        started = time.perf_counter()
        response = await driver.chat(ask(120), spec)  # loads, then generates
        took = time.perf_counter() - started
    finally:
        done.set()
        await ticker
        await driver.aclose()

    assert response.usage.completion_tokens == 120
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert took > 0.2  # long enough that a blocked loop would show
    assert max(gaps) < min(0.1, took / 2), f"event loop stalled for {max(gaps) * 1000:.0f} ms"


async def test_mailbox_delivers_every_item_in_order_however_wakeups_batch():
    box = _Mailbox(asyncio.get_running_loop(), gap=3600.0)  # only the first and urgent puts wake

    def produce() -> None:
        box.put("opening", hold=True)
        for i in range(50):
            box.put(i)
        box.put("end", urgent=True)

    await asyncio.to_thread(produce)
    assert [await box.get() for _ in range(52)] == ["opening", *range(50), "end"]

    closed = asyncio.new_event_loop()
    closed.close()
    assert _Mailbox(closed).put("late") is False  # the worker learns nobody listens any more


# ── errors ───────────────────────────────────────────────────────────────────


async def test_missing_file_is_not_found(driver, tmp_path):
    ghost = ModelSpec(id="local/ghost", name="ghost", provider="local", path=str(tmp_path / "ghost.gguf"))
    with pytest.raises(NotFoundError, match=r"ghost\.gguf"):
        await driver.load(ghost)
    with pytest.raises(NotFoundError):
        await driver.chat(ask(2), ghost)
    assert await driver.loaded_models() == []


@pytest.mark.parametrize(
    "options",
    [{"models": "one.gguf"}, {"models": [{"chat_format": "chatml"}]}, {"n_ctx": "big"}, {"dirs": "/models"}],
)
def test_bad_settings_are_a_config_error(options):
    with pytest.raises(ConfigError):
        make_driver(**options)


async def test_unknown_model_name_lists_what_exists(driver):
    with pytest.raises(ModelNotFoundError) as info:
        await driver.load(ModelSpec(id="local/nope", name="nope", provider="local"))
    assert info.value.available == ["tiny-chat"]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_corrupt_file_is_a_bad_request_not_a_crash(driver, tmp_path, tiny_gguf, damage):
    path = tmp_path / "damaged.gguf"
    data = tiny_gguf.read_bytes()
    path.write_bytes(b"\x00" * 1000 if damage == "garbage" else data[: len(data) // 2])
    spec = ModelSpec(id="local/damaged", name="damaged", provider="local", path=str(path))

    with pytest.raises(BadRequestError, match=r"damaged\.gguf"):
        await driver.chat(ask(2), spec)
    assert await driver.loaded_models() == []


async def test_prompt_longer_than_the_context_is_a_context_error(driver, spec):
    too_long = ask(8, "hello " * 600)  # > 512 tokens: one per word

    with pytest.raises(ContextWindowExceededError):
        await driver.chat(too_long, spec)
    with pytest.raises(ContextWindowExceededError):
        async for _ in driver.stream(too_long, spec):
            pass
    # the model is still fine afterwards
    assert (await driver.chat(ask(2), spec)).usage.completion_tokens == 2


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


async def test_a_named_tool_is_called(driver, spec):
    request = ask(24, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    response = await driver.chat(request, spec)

    assert response.finish_reason == "tool_calls"
    (call,) = response.message.tool_calls
    assert call.function.name == "get_weather"
    assert call.function.arguments.startswith("{")  # grammar-forced JSON (cut at max_tokens)


async def test_tools_the_template_cannot_choose_are_not_supported(driver, spec):
    with pytest.raises(NotSupportedError, match="tool_choice"):
        await driver.chat(ask(4, tools=[WEATHER], tool_choice="auto"), spec)
    # tool_choice "none" means plain chat
    response = await driver.chat(ask(4, tools=[WEATHER], tool_choice="none"), spec)
    assert response.usage.completion_tokens == 4


async def test_images_and_several_choices_are_not_supported(driver, spec):
    image = ChatRequest(
        model="x",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    )
    with pytest.raises(NotSupportedError):
        await driver.chat(image, spec)
    with pytest.raises(NotSupportedError):
        await driver.chat(ask(2, n=2), spec)


async def test_health_reports_llama_cpp(driver):
    status = await driver.health()
    assert status.ok and "llama-cpp-python" in status.detail
