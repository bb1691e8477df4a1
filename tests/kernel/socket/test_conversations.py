"""Sessions continued through the kernel across swaps, trimmed to the new model's window."""

from __future__ import annotations

import pytest

from app.kernel.canonical import ModelSpec
from app.kernel.errors import ModelNotFoundError
from app.kernel.socket.manager import SwapStrategy
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture
async def ab(kernel):
    fakes = {}
    for name, window in (("a", 128_000), ("b", 400)):
        fake = await FakeOpenAI().start()
        fake.reply_text = f"reply from {name}"
        kernel.registry.add_provider(name, "openai", base_url=fake.api_base)
        kernel.registry.upsert_models(name, [ModelSpec(id=f"{name}/m", name="m", provider=name,
                                                       context_window=window)])
        fakes[name] = fake
    await kernel.set_default_model("a/m")
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()


def sent_messages(fake) -> list[dict]:
    return fake.requests[-1].body["messages"]


async def test_a_session_carries_on_across_a_swap(kernel, ab):
    conv = kernel.conversations
    session = conv.create(system="You are terse.")
    _, first = await conv.say(session.id, "hello")
    await kernel.socket.swap("default", "b/m")
    answer, second = await conv.say(session.id, "and again")
    assert (first.id, second.id) == ("a/m", "b/m")
    assert answer.message.content == "reply from b"
    assert [m["content"] for m in sent_messages(ab["b"])] == [
        "You are terse.", "hello", "reply from a", "and again"]
    turns = conv.store.turns(session.id)
    assert [t.model for t in turns if t.message["role"] == "assistant"] == ["a/m", "b/m"]


async def test_history_is_trimmed_to_a_smaller_window_oldest_first(kernel, ab):
    conv = kernel.conversations
    session = conv.create(system="Keep me.")
    for i in range(12):
        await conv.say(session.id, f"message number {i} " + "padding words " * 10)
    await kernel.socket.swap("default", "b/m")  # window 400 tokens
    await conv.say(session.id, "latest question", max_tokens=50)
    sent = sent_messages(ab["b"])
    assert sent[0]["content"] == "Keep me."
    assert sent[-1]["content"] == "latest question"
    assert len(sent) < 2 + 2 * 12  # older turns were dropped…
    kept_users = [m["content"] for m in sent if m["role"] == "user"][:-1]
    assert kept_users == sorted(kept_users, key=lambda c: int(c.split()[2]))  # …and the newest kept
    assert "message number 11" in kept_users[-1]
    assert len(conv.store.history(session.id)) == 1 + 2 * 13  # nothing is lost from the stored history


async def test_session_aware_swap_keeps_an_open_session_on_its_model(kernel, ab):
    conv = kernel.conversations
    old = conv.create()
    await kernel.socket.swap("default", "b/m", SwapStrategy.SESSION_AWARE)
    new = conv.create()
    assert (await conv.say(old.id, "hi"))[1].id == "a/m"
    assert (await conv.say(new.id, "hi"))[1].id == "b/m"
    conv.close(old.id)
    assert kernel.socket.aliases()[0].pinned_sessions == 0


async def test_streamed_turns_are_stored_with_their_model(kernel, ab):
    conv = kernel.conversations
    session = conv.create()
    text = "".join([c.text() async for c in await conv.say_streaming(session.id, "stream please")])
    assert text == "reply from a"
    last = conv.store.turns(session.id)[-1]
    assert last.message == {"role": "assistant", "content": "reply from a"} and last.model == "a/m"


async def test_unknown_alias_is_refused_before_storing(kernel, ab):
    with pytest.raises(ModelNotFoundError):
        kernel.conversations.create("nonexistent")
    assert kernel.conversations.store.list() == []
