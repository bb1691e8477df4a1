"""The PSP: four layers within the budget, scored and explained, merged, scoped to what an app may see."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from app.kernel.personal.psp import WEIGHTS, budget_for
from app.kernel.personal.service import Caller, merge_system

from .conftest import CHAT, LONER, NOTES, needs_model

USER = Caller.user()
CANARY = "quetzalcoatl-password-8812"


def _days_ago(n: float) -> str:
    return (datetime.now(UTC) - timedelta(days=n)).isoformat()


async def _seed(personal):
    await personal.add(
        [
            {
                "id": "pref",
                "highlight": "I prefer metric units and short answers",
                "tag": ["preference"],
                "timestamp": _days_ago(200),
                "access": "shared",
            },
            {
                "id": "proj",
                "highlight": "Project Heron: migrating the billing service to Postgres",
                "note": "deadline end of month, important",
                "timestamp": _days_ago(3),
                "access": "shared",
                "metadata": {"importance": 0.9},
            },
            {
                "id": "trip",
                "highlight": "Trip to Lisbon in May with the kids",
                "note": "book a hotel near Alfama",
                "timestamp": _days_ago(10),
                "access": "shared",
            },
            {
                "id": "old",
                "highlight": "Read an article about sourdough",
                "timestamp": _days_ago(400),
                "access": "shared",
            },
            *[
                {
                    "id": f"misc{i}",
                    "highlight": f"misc note {i} about weekend chores",
                    "timestamp": _days_ago(i / 10),
                    "access": "shared",
                }
                for i in range(30)
            ],
        ],
        NOTES,
    )
    await personal.add_rule("Answer in British English", True, USER)
    await personal.add_rule("Never suggest paid tools", False, USER)
    await personal.wait_vectors()


async def test_layers_budget_and_explanations(personal):
    await _seed(personal)
    psp = await personal.build_psp(CHAT, "which hotel should I book in Lisbon?", budget=400)
    assert psp.tokens <= psp.budget == 400
    layers = {i.id: i.layer for i in psp.items}
    assert layers["rule:1"] == "core" and layers["pref"] == "core"
    assert layers["trip"] == "context"
    assert psp.text.startswith("# Personal System Prompt")
    assert psp.text.index("## Core") < psp.text.index("## Working") < psp.text.index("## Context")
    assert "Answer in British English" in psp.text
    for item in psp.items:
        if item.kind == "record":
            s = item.scores
            assert s["total"] == pytest.approx(sum(WEIGHTS[k] * s[k] for k in WEIGHTS), abs=1e-3)
            assert all(0 <= s[k] <= 1 for k in WEIGHTS)
    assert sum(i.tokens for i in psp.items) <= psp.budget
    # the newest records fill the Buffer; the oldest trivia doesn't make it into a small PSP
    assert any(i.layer == "buffer" for i in psp.items)
    assert "old" not in layers


async def test_a_tiny_budget_keeps_pinned_rules_and_stays_within_it(personal):
    await _seed(personal)
    psp = await personal.build_psp(CHAT, "Lisbon", budget=90)
    assert psp.tokens <= 90
    assert [i.id for i in psp.items][:1] == ["rule:1"]


async def test_budget_follows_the_model_window_and_leaves_room_for_the_request():
    assert budget_for(8192, 100, None, 2048) == int(8192 * 0.15)
    assert budget_for(200_000, 100, None, 2048) == 2048
    assert budget_for(4096, 3800, 200, 2048) == 48  # nearly full: the PSP shrinks (and is skipped under 64)
    assert budget_for(None, 0, None, 2048) == int(8192 * 0.15)


def test_merging_keeps_the_apps_system_prompt_first():
    msgs = [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "hi"}]
    merge_system(msgs, "# Personal System Prompt\n...")
    assert msgs[0]["content"].startswith("You are a pirate.\n\n# Personal System Prompt")
    parts = [
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "x"},
    ]
    merge_system(parts, "PSP")
    assert parts[0]["content"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "PSP"}]
    bare = [{"role": "user", "content": "x"}]
    merge_system(bare, "PSP")
    assert bare[0] == {"role": "system", "content": "PSP"} and len(bare) == 2


async def test_apply_injects_only_for_opted_in_apps_and_not_when_paused(personal):
    await _seed(personal)
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "plan my Lisbon trip"},
        ],
    }
    untouched = copy.deepcopy(body)
    assert await personal.apply("chat-app", CHAT.scopes, body, 8192) is None
    assert body == untouched  # not opted in
    personal.set_injection("chat-app", True)
    version = await personal.apply("chat-app", CHAT.scopes, body, 8192)
    assert version and version.startswith("psp-")
    system = body["messages"][0]["content"]
    assert system.startswith("Be kind.\n\n# Personal System Prompt") and "Lisbon" in system
    assert body["messages"][1] == untouched["messages"][1]
    preview = await personal.build_psp(CHAT, "plan my Lisbon trip", budget=budget_for(8192, 0, None, 2048))
    assert preview.version is not None
    personal.set_paused(True)
    again = copy.deepcopy(untouched)
    assert await personal.apply("chat-app", CHAT.scopes, again, 8192) is None and again == untouched
    personal.set_paused(False)
    assert await personal.apply(None, frozenset(), copy.deepcopy(untouched), 8192) is None  # anonymous: never


async def test_preview_names_the_same_version_that_gets_injected(personal):
    await _seed(personal)
    personal.set_injection("chat-app", True)
    body = {"model": "m", "messages": [{"role": "user", "content": "Lisbon hotel?"}]}
    version = await personal.apply("chat-app", CHAT.scopes, body, 8192)
    budget = budget_for(
        8192,
        personal.embedder.count_tokens(__import__("orjson").dumps(body["messages"][1:]).decode()),
        None,
        2048,
    )
    preview = await personal.build_psp(CHAT, "Lisbon hotel?", budget=budget)
    assert preview.version == version
    assert body["messages"][0]["content"] == preview.text


async def test_access_frequency_grows_with_use(personal):
    await _seed(personal)
    personal.set_injection("chat-app", True)
    for _ in range(3):
        await personal.apply(
            "chat-app", CHAT.scopes, {"messages": [{"role": "user", "content": "Lisbon"}]}, 8192
        )
    await personal.audit_log(1)  # flushes the buffered counters
    psp = await personal.build_psp(CHAT, "Lisbon", budget=400)
    trip = next(i for i in psp.items if i.id == "trip")
    assert trip.scores["frequency"] > 0


@needs_model
async def test_semantic_retrieval_finds_what_no_word_matches(personal):
    await _seed(personal)
    psp = await personal.build_psp(CHAT, "family holiday in Portugal", budget=400)
    assert psp.retrieval == "hybrid"
    assert any(i.id == "trip" and i.layer == "context" for i in psp.items)


async def test_app_a_private_records_never_reach_app_b(personal):
    """The AIOS cross-agent leak (#549) must be impossible: visibility is enforced in every path."""
    await personal.add(
        [
            {"id": "a-secret", "highlight": f"my bank {CANARY} for the Lisbon trip", "access": "private"},
            {"id": "a-shared", "highlight": "Lisbon trip packing list", "access": "shared"},
        ],
        NOTES,
    )
    await personal.add({"id": "b-own", "highlight": "chat app's own Lisbon note"}, CHAT)
    await personal.wait_vectors()
    for caller in (CHAT, LONER):
        personal.set_injection(caller.app, True)
        for query in (CANARY, "bank password Lisbon trip", ""):
            psp = await personal.build_psp(caller, query, budget=2000)
            assert CANARY not in psp.text
            assert "a-secret" not in {i.id for i in psp.items}
            body = {"messages": [{"role": "user", "content": query or "hello"}]}
            await personal.apply(caller.app, caller.scopes, body, 200_000)
            injected = [m["content"] for m in body["messages"] if m["role"] == "system"]
            assert CANARY not in str(injected)
        found = await personal.search(caller, text=CANARY)
        assert found["total"] == 0
        with pytest.raises(Exception, match="no record"):
            await personal.get("a-secret", caller)
        if personal.vectors.is_open:
            vec = personal.embedder.model().encode([f"my bank {CANARY}"])[0]
            keys = {k for k, _ in personal.vectors.query(vec, caller.visibility(), 50)}
            owners = personal.store.by_keys(list(keys))
            assert all(r["source"] == caller.app or r["access"] != "private" for r in owners.values())
            assert all(r["id"] != "a-secret" for r in owners.values())
    # with hinata:read, B sees A's shared record; without it, not even that
    assert "a-shared" in {i.id for i in (await personal.build_psp(CHAT, "packing list", budget=2000)).items}
    assert "a-shared" not in {
        i.id for i in (await personal.build_psp(LONER, "packing list", budget=2000)).items
    }
    # and A itself, the user and a preview as A still see A's private record
    assert "a-secret" in {i.id for i in (await personal.build_psp(NOTES, CANARY, budget=2000)).items}
    assert (await personal.search(USER, text=CANARY))["total"] == 1
