"""The personal service end to end: SQLite and chromadb kept consistent, catch-up, fallback, control."""

from __future__ import annotations

import asyncio
import json
import shutil

import orjson
import pytest

from app.kernel.errors import NotFoundError, PermissionDeniedError
from app.kernel.personal.service import Caller, PersonalDataChanged, PersonalService

from .conftest import CHAT, NOTES, needs_model

USER = Caller.user()


async def _restart(kernel, **kw) -> PersonalService:
    await kernel.personal.stop()
    kernel.personal = PersonalService(kernel.paths, kernel.secrets, kernel.events, chat=kernel.chat, **kw)
    await kernel.personal.start()
    await kernel.personal.ready()
    return kernel.personal


@needs_model
async def test_records_get_vectors_and_deleting_removes_them_everywhere(personal):
    await personal.add(
        [{"id": f"v{i}", "highlight": f"gardening note {i}: tomatoes and basil"} for i in range(5)], NOTES
    )
    await personal.wait_vectors()
    assert personal.vectors.count() == 5
    vec = personal.embedder.model().encode(["tomatoes"])[0]
    keys = {k for k, _ in personal.vectors.query(vec, NOTES.visibility(), 10)}
    assert len(keys) == 5
    await personal.delete("v0", NOTES)
    await personal.wait_vectors()
    assert personal.vectors.count() == 4
    assert len(personal.vectors.query(vec, NOTES.visibility(), 10)) == 4
    assert (await personal.search(NOTES, text="gardening"))["total"] == 4
    with pytest.raises(NotFoundError):
        await personal.get("v0", NOTES)


async def test_without_the_model_retrieval_is_full_text_and_catch_up_resumes_later(kernel, tmp_path):
    personal = await _restart(kernel, model_dir=tmp_path / "no-model-here")
    await personal.add([{"id": "t1", "highlight": "the violin lesson is on thursday"}], NOTES)
    await personal.wait_vectors()
    status = await personal.status()
    assert status["vector_backlog"] == 1 and "fetch_embedding_model.py" in status["embedding_problem"]
    psp = await personal.build_psp(NOTES, "when is my violin lesson?", budget=400)
    assert psp.retrieval == "fts-only"
    assert [i.id for i in psp.items if i.layer == "context"] == ["t1"]
    if not (await _model_available()):
        pytest.skip("the second half needs the embedding model (scripts/fetch_embedding_model.py)")
    personal = await _restart(kernel)  # the model is back: the queue left behind is worked off
    await personal.wait_vectors()
    assert (await personal.status())["vector_backlog"] == 0
    assert personal.vectors.count() == 1


async def _model_available() -> bool:
    from app.kernel.personal.embed import model_present

    return model_present()


@needs_model
async def test_a_lost_vector_folder_is_rebuilt_from_the_store(kernel):
    personal = kernel.personal
    await personal.ready()
    await personal.add([{"highlight": f"record {i} about sailing"} for i in range(3)], NOTES)
    await personal.wait_vectors()
    await personal.stop()
    shutil.rmtree(personal.vector_dir)
    personal = await _restart(kernel)
    personal.want_vectors()
    await personal.wait_vectors()
    assert personal.vectors.count() == 3


async def test_enhancement_is_stored_beside_the_untouched_record(personal):
    original = {
        "id": "e1",
        "highlight": "Flight to Tokyo booked for the Japan trip",
        "note": "Remember the passport and the hotel booking",
        "tag": ["Travel"],
    }
    await personal.add(original, NOTES)
    rec = await personal.get("e1", NOTES)
    assert {k: rec[k] for k in ("highlight", "note")} == {k: original[k] for k in ("highlight", "note")}
    assert rec["tag"] == ["Travel"]
    e = rec["enhancement"]
    assert e["method"] == "keywords"
    assert "travel" in e["topics"]
    assert any("passport" in c or "tokyo" in c for c in e["concepts"])
    assert 0 < e["importance"] <= 1
    # enhancement words are searchable: the topic finds the record though the text never says it
    assert (await personal.search(NOTES, text="travel"))["total"] == 1


async def test_model_enhancement_runs_only_when_the_user_allows_it(kernel_with_openai, openai_upstream):
    personal = kernel_with_openai.personal
    await personal.ready()
    seen = []

    def reply(body):
        seen.append(body)
        return json.dumps(
            {"tags": ["sourdough"], "topics": ["food"], "concepts": ["levain"], "importance": 0.9}
        )

    openai_upstream._reply_for = reply
    await personal.add({"id": "m0", "highlight": "baking bread on sunday"}, NOTES)
    assert (await personal.status())["enhance_backlog"] == 0  # off by default: nothing leaves the machine
    events = kernel_with_openai.events.subscribe()
    personal.set_setting("enhance_model", "fake/gpt-fake-mini")
    personal.set_setting("enhance_with_model", True)
    await personal.add({"id": "m1", "highlight": "feeding the starter before baking"}, NOTES)
    async with asyncio.timeout(30):
        async for event in events:
            if isinstance(event, PersonalDataChanged) and event.action == "enhanced":
                break
    e = (await personal.get("m1", NOTES))["enhancement"]
    assert e == {
        "tags": ["sourdough"],
        "topics": ["food"],
        "concepts": ["levain"],
        "importance": 0.9,
        "method": "model:fake/gpt-fake-mini",
    }
    assert seen[0]["response_format"] == {"type": "json_object"}
    assert (await personal.get("m1", NOTES))["highlight"] == "feeding the starter before baking"
    assert (await personal.get("m0", NOTES))["enhancement"]["method"] == "keywords"


async def test_export_then_delete_everything(personal):
    await personal.add(
        [{"id": "x1", "highlight": "first", "tag": ["a"]}, {"id": "x2", "highlight": "second"}], NOTES
    )
    await personal.add_rule("Use metric units", True, USER)
    lines = [
        orjson.loads(line)
        for chunk in [c async for c in personal.export(USER)]
        for line in chunk.splitlines()
    ]
    assert {line.get("id") for line in lines if "id" in line} == {"x1", "x2"}
    assert {"kind": "core_rule", "text": "Use metric units", "pinned": True} in lines
    assert all("enhancement" in line for line in lines if "id" in line)
    assert await personal.delete_all(USER) == 2
    await personal.wait_vectors()
    assert (await personal.search(USER))["total"] == 0
    assert await personal.rules(USER) == []
    assert (await personal.status())["vector_backlog"] == 0
    if personal.vectors.is_open:
        assert personal.vectors.count() == 0
    # an export is importable again
    text = "\n".join(orjson.dumps(line).decode() for line in lines)
    report = await personal.import_jsonl(text, USER)
    assert report.created == 3 and not report.errors  # two records + the rule
    assert {r["source"] for r in (await personal.search(USER))["data"]} == {"notes-app"}


async def test_jsonl_import_reports_bad_lines_and_keeps_good_ones(personal):
    text = "\n".join(
        [
            json.dumps({"id": "j1", "highlight": "good one"}),
            "{not json",
            json.dumps({"id": "j2", "highlight": "x", "access": "secret"}),
            "",
            json.dumps({"id": "j3", "note": "good two"}),
        ]
    )
    report = await personal.import_jsonl(text, NOTES)
    assert report.created == 2
    assert len(report.errors) == 2
    assert report.errors[0].startswith("line 2: not valid JSON")
    assert report.errors[1].startswith("line 3: access")
    again = await personal.import_jsonl(text, NOTES)
    assert again.unchanged == 2 and again.created == 0


async def test_only_the_owner_or_the_user_may_forget_a_record(personal):
    await personal.add({"id": "own", "highlight": "shared thing", "access": "shared"}, NOTES)
    with pytest.raises(PermissionDeniedError):
        await personal.delete("own", CHAT)  # CHAT can read it (hinata:read) but not delete it
    await personal.delete("own", USER)
    with pytest.raises(NotFoundError):
        await personal.get("own", USER)


async def test_reads_are_audited(personal):
    await personal.add({"id": "au", "highlight": "audited thing"}, NOTES)
    await personal.get("au", NOTES)
    await personal.search(CHAT, text="audited")
    await personal.build_psp(CHAT, "audited", budget=300)
    log = await personal.audit_log(10)
    actions = [(e["app"], e["action"]) for e in log]
    assert ("notes-app", "hinata.get") in actions
    assert ("chat-app", "hinata.search") in actions
    assert ("chat-app", "psp.preview") in actions


@needs_model
async def test_changing_the_model_re_embeds_everything(kernel, monkeypatch):
    monkeypatch.setenv("BYENATOS_EMBED_PRECISION", "fp32")
    personal = await _restart(kernel)
    await personal.add([{"highlight": f"kayak trip {i}"} for i in range(3)], NOTES)
    await personal.wait_vectors()
    marker = personal.vector_dir / "embedding-model.txt"
    assert marker.read_text().endswith("fp32")
    monkeypatch.setenv("BYENATOS_EMBED_PRECISION", "int8")
    personal = await _restart(kernel)
    personal.want_vectors()
    await personal.wait_vectors()
    assert marker.read_text().endswith("int8")
    assert personal.vectors.count() == 3 and (await personal.status())["vector_backlog"] == 0


async def test_a_providers_embeddings_can_replace_the_local_model(kernel_with_openai):
    personal = kernel_with_openai.personal
    await personal.ready()
    await personal.add(
        [{"id": "pe1", "highlight": "kite surfing in Tarifa"}, {"id": "pe2", "highlight": "tax forms"}], NOTES
    )
    personal.set_setting("embedding_model", "fake/gpt-fake-mini")
    await personal.wait_vectors()
    assert (personal.vector_dir / "embedding-model.txt").read_text() == "provider:fake/gpt-fake-mini"
    assert personal.vectors.count() == 2 and (await personal.status())["vector_backlog"] == 0
    psp = await personal.build_psp(NOTES, "kite surfing", budget=300)
    assert psp.retrieval == "hybrid" and any(i.id == "pe1" for i in psp.items)
    with pytest.raises(Exception, match="embedding_model"):
        personal.set_setting("embedding_model", "")
