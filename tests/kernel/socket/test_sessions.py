"""Sessions in SQLite (durable under SIGKILL) and trimming histories to a model's window."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from app.kernel import tokens
from app.kernel.canonical import ChatMessage, ModelSpec
from app.kernel.errors import BadRequestError, ContextWindowExceededError, NotFoundError
from app.kernel.socket.sessions import SessionStore, trim_to_window
from app.kernel.store.db import open_database
from app.kernel.tokens import count_tokens, estimate_tokens

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path):
    db = open_database(tmp_path / "sessions.sqlite3")
    yield db
    db.close()


@pytest.fixture
def store(db) -> SessionStore:
    return SessionStore(db)


def gpt4o(window: int) -> ModelSpec:
    return ModelSpec(
        id="openai/gpt-4o", name="gpt-4o", provider="openai", vendor="openai", context_window=window
    )


TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ],
}
TOOL_RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 3}'}


# ── the store ────────────────────────────────────────────────────────────────


def test_a_session_keeps_its_history_in_order(store):
    session = store.create(alias="code", app="editor", system="You are terse.", metadata={"title": "weather"})
    assert (session.alias, session.app, session.metadata, session.open) == (
        "code",
        "editor",
        {"title": "weather"},
        True,
    )
    assert session.message_count == 1

    store.append(session.id, {"role": "user", "content": "Weather in Oslo?"})
    store.append(session.id, TOOL_CALL, model="local/tiny-a")
    store.append(session.id, TOOL_RESULT)
    turn = store.append(session.id, ChatMessage(role="assistant", content="3 °C."), model="local/tiny-a")
    assert turn.seq == 4 and turn.model == "local/tiny-a"

    assert store.history(session.id) == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": TOOL_CALL["tool_calls"]},  # content None is left out
        TOOL_RESULT,
        {"role": "assistant", "content": "3 °C."},
    ]
    again = store.get(session.id)
    assert again.message_count == 5 and again.updated_at >= session.updated_at


def test_each_answer_records_the_model_so_a_swap_shows_in_the_history(store):
    session = store.create()
    store.append(session.id, {"role": "user", "content": "hi"})
    store.append(session.id, {"role": "assistant", "content": "hello"}, model="ollama/llama3.2")
    store.append(session.id, {"role": "user", "content": "and you are?"})
    store.append(session.id, {"role": "assistant", "content": "another model"}, model="openai/gpt-4o")
    assert [(t.message["role"], t.model) for t in store.turns(session.id)] == [
        ("user", None),
        ("assistant", "ollama/llama3.2"),
        ("user", None),
        ("assistant", "openai/gpt-4o"),
    ]
    assert store.get(session.id).alias == "default"


def test_sessions_persist_across_reopening_the_database(tmp_path):
    path = tmp_path / "s.sqlite3"
    db = open_database(path)
    session = SessionStore(db).create(system="sys")
    SessionStore(db).append(session.id, {"role": "user", "content": "still here?"})
    db.close()
    db = open_database(path)
    try:
        assert SessionStore(db).history(session.id)[-1] == {"role": "user", "content": "still here?"}
    finally:
        db.close()


def test_closed_sessions_refuse_messages_but_keep_their_history(store):
    session = store.create(system="sys")
    closed = store.close(session.id)
    assert not closed.open and closed.closed_at is not None
    assert store.close(session.id).closed_at == closed.closed_at  # idempotent
    with pytest.raises(BadRequestError, match="is closed"):
        store.append(session.id, {"role": "user", "content": "hello?"})
    assert store.history(session.id) == [{"role": "system", "content": "sys"}]


def test_list_filters_by_app_and_openness_newest_first(store):
    a = store.create(app="notes")
    b = store.create(app="editor")
    c = store.create(app="notes")
    store.append(a.id, {"role": "user", "content": "bump"})  # a is now the most recently active
    store.close(c.id)
    assert [s.id for s in store.list()] == [a.id, b.id]
    assert [s.id for s in store.list(app="notes")] == [a.id]
    assert {s.id for s in store.list(app="notes", open_only=False)} == {a.id, c.id}
    assert [s.message_count for s in store.list()] == [1, 0]


def test_delete_removes_the_session_and_its_messages(store, db):
    session = store.create(system="sys")
    store.append(session.id, {"role": "user", "content": "forget me"})
    assert store.delete(session.id) is True
    assert store.delete(session.id) is False
    assert db.execute_sql("SELECT COUNT(*) FROM session_message").fetchone() == (0,)
    with pytest.raises(NotFoundError, match="no session"):
        store.get(session.id)


@pytest.mark.parametrize(
    ("message", "complaint"),
    [
        ({"content": "no role"}, "message.role"),
        ({"role": "wizard", "content": "hi"}, "message.role"),
        ({"role": "user", "content": 42}, "message.content"),
        ("just text", "JSON object"),
    ],
)
def test_bad_messages_are_refused_with_the_field_named(store, message, complaint):
    session = store.create()
    with pytest.raises(BadRequestError, match=complaint):
        store.append(session.id, message)
    assert store.history(session.id) == []


def test_unknown_sessions_and_bad_arguments_are_typed_errors(store):
    for call in (store.get, store.history, store.close):
        with pytest.raises(NotFoundError):
            call("sess-nope")
    with pytest.raises(NotFoundError):
        store.append("sess-nope", {"role": "user", "content": "hi"})
    with pytest.raises(BadRequestError, match="alias"):
        store.create(alias=" ")
    with pytest.raises(BadRequestError, match="metadata"):
        store.create(metadata=["not", "a", "dict"])


async def test_appended_messages_survive_kill_9(tmp_path):
    """Every append that returned is on disk, even when the process dies the next instant."""
    path = tmp_path / "s.sqlite3"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from app.kernel.socket.sessions import SessionStore
        from app.kernel.store.db import open_database
        store = SessionStore(open_database(sys.argv[1]))
        session = store.create(alias="code", app="editor", system="be brief")
        for i in range(25):
            store.append(session.id, {"role": "user", "content": f"question {i}"})
            store.append(session.id, {"role": "assistant", "content": f"answer {i}"}, model="local/a")
        print(session.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, str(path), cwd=REPO, stdout=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == -9
    session_id = out.decode().strip()
    con = sqlite3.connect(path)  # as found on disk, without our code
    assert con.execute(
        "SELECT COUNT(*) FROM session_message WHERE session_id = ?", (session_id,)
    ).fetchone() == (51,)
    con.close()
    db = open_database(path)
    try:
        store = SessionStore(db)
        history = store.history(session_id)
        assert history[0] == {"role": "system", "content": "be brief"}
        assert history[-1] == {"role": "assistant", "content": "answer 24"}
        assert store.get(session_id).open
    finally:
        db.close()


# ── trimming ─────────────────────────────────────────────────────────────────

SYSTEM = {"role": "system", "content": "You are terse."}


def conversation(n_turns: int) -> list[list[dict]]:
    return [
        [
            {"role": "user", "content": f"Question {i}: " + "what about this, and that? " * 4},
            {"role": "assistant", "content": f"Answer {i}: " + "this, then that. " * 6},
        ]
        for i in range(n_turns)
    ]


def test_a_history_that_fits_is_left_alone():
    messages = [SYSTEM, *itertools.chain(*conversation(3)), {"role": "user", "content": "and?"}]
    assert trim_to_window(messages, gpt4o(128_000), reserve_output=4096) == messages


def test_oldest_turns_go_first_and_the_system_prompt_and_latest_question_stay():
    turns = conversation(4)
    latest = {"role": "user", "content": "So what now?"}
    messages = [SYSTEM, *itertools.chain(*turns), latest]
    expected = [SYSTEM, *turns[2], *turns[3], latest]
    reserve = 100
    window = count_tokens(gpt4o(0), expected) + reserve  # exactly enough for the last two turns

    assert trim_to_window(messages, gpt4o(window), reserve_output=reserve) == expected
    assert trim_to_window(messages, gpt4o(window - 1), reserve_output=reserve) == [SYSTEM, *turns[3], latest]
    minimal = count_tokens(gpt4o(0), [SYSTEM, latest]) + reserve
    assert trim_to_window(messages, gpt4o(minimal), reserve_output=reserve) == [SYSTEM, latest]


def test_tool_calls_and_their_results_are_dropped_together():
    """At every window size the kept history is well formed: no call without results, no orphan result."""
    calls = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"c{i}",
                "type": "function",
                "function": {"name": "lookup", "arguments": f'{{"q": "{i}"}}'},
            }
            for i in (1, 2)
        ],
    }
    messages = [
        SYSTEM,
        {"role": "user", "content": "Look up one and two, please."},
        calls,
        {"role": "tool", "tool_call_id": "c1", "content": "one is 1 " * 10},
        {"role": "tool", "tool_call_id": "c2", "content": "two is 2 " * 10},
        {"role": "assistant", "content": "One is 1 and two is 2."},
        {"role": "user", "content": "Thanks. And three?"},
        {**TOOL_CALL, "tool_calls": [{**TOOL_CALL["tool_calls"][0], "id": "c3"}]},
        {"role": "tool", "tool_call_id": "c3", "content": "three is 3"},
        {"role": "assistant", "content": "Three is 3."},
        {"role": "user", "content": "Great, summarise."},
    ]
    spec = gpt4o(0)
    full = count_tokens(spec, messages)
    minimal = count_tokens(spec, [SYSTEM, messages[-1]])
    seen = set()
    for window in range(minimal, full + 1):
        kept = trim_to_window(messages, gpt4o(window), reserve_output=0)
        assert count_tokens(spec, kept) <= window
        assert kept[0] is SYSTEM and kept[-1] is messages[-1]
        called = {c["id"] for m in kept for c in m.get("tool_calls") or []}
        answered = {m["tool_call_id"] for m in kept if m["role"] == "tool"}
        assert called == answered, (window, kept)
        assert kept[1]["role"] == "user"  # whole turns go: the history still starts with a question
        dropped = [m for m in messages if m not in kept]
        assert dropped == messages[1 : 1 + len(dropped)]  # oldest first
        seen.add(len(kept))
    assert seen == {2, 6, len(messages)}  # none, one, or both earlier turns kept


def test_an_agent_loop_in_progress_is_kept_whole():
    latest = [{"role": "user", "content": "What's the weather in Oslo?"}, TOOL_CALL, TOOL_RESULT]
    messages = [SYSTEM, *itertools.chain(*conversation(2)), *latest]
    window = count_tokens(gpt4o(0), [SYSTEM, *latest])
    assert trim_to_window(messages, gpt4o(window), reserve_output=0) == [SYSTEM, *latest]


def test_trimming_uses_the_real_token_count_not_the_estimate():
    messages = [
        SYSTEM,
        {"role": "user", "content": "hello " * 300},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "And now?"},
    ]
    spec = gpt4o(0)
    real = count_tokens(spec, messages)
    estimated = tokens.REPLY_PRIMING + sum(
        tokens.TOKENS_PER_MESSAGE + estimate_tokens(m["role"]) + estimate_tokens(m["content"])
        for m in messages
    )
    assert (real, estimated) == (329, 547)  # o200k_base: " hello" is one token
    assert trim_to_window(messages, gpt4o(real + 50), reserve_output=50) == messages  # fits, truly
    assert trim_to_window(messages, gpt4o(real + 49), reserve_output=50) == [SYSTEM, messages[-1]]


def test_a_local_models_own_tokenizer_decides_the_trim():
    turns = conversation(3)
    messages = [SYSTEM, *itertools.chain(*turns), {"role": "user", "content": "ok?"}]
    window = count_tokens(ModelSpec(id="local/m", name="m", provider="local"), messages)
    local = ModelSpec(id="local/m", name="m", provider="local", local=True, context_window=window)

    def chars(text: str) -> int:  # a vocabulary far coarser than BPE
        return len(text)

    assert trim_to_window(messages, local, reserve_output=0) == messages  # by the default BPE: it fits
    assert trim_to_window(messages, local, reserve_output=0, tokenizer=chars) == [SYSTEM, messages[-1]]


def test_when_even_the_system_prompt_and_question_do_not_fit_it_says_so():
    huge_system = {"role": "system", "content": "Rule. " * 500}
    messages = [huge_system, *itertools.chain(*conversation(2)), {"role": "user", "content": "hi"}]
    with pytest.raises(ContextWindowExceededError) as refused:
        trim_to_window(messages, gpt4o(600), reserve_output=200)
    text = str(refused.value)
    assert "openai/gpt-4o" in text and "600-token window" in text and "200 kept for the answer" in text
    assert refused.value.status == 400 and refused.value.code == "context_length_exceeded"
    with pytest.raises(ContextWindowExceededError, match="0 left"):
        trim_to_window([{"role": "user", "content": "hi"}], gpt4o(100), reserve_output=100)


def test_pydantic_messages_are_trimmed_and_returned_as_given():
    turns = conversation(3)
    models = [
        ChatMessage.model_validate(m)
        for m in [SYSTEM, *itertools.chain(*turns), {"role": "user", "content": "?"}]
    ]
    window = count_tokens(gpt4o(0), [models[0], *turns[2], models[-1]])
    kept = trim_to_window(models, gpt4o(window), reserve_output=0)
    assert kept == [models[0], models[5], models[6], models[-1]]
    assert all(k is m for k, m in zip(kept, [models[0], models[5], models[6], models[-1]], strict=True))
