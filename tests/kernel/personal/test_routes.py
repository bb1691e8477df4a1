"""/api/hinata and /api/psp over real HTTP: field-level 400s, record-level rules, the user's controls."""

from __future__ import annotations

import socket

import aiohttp
import orjson
import pytest

from app.kernel.gateway import personal_routes, web
from app.kernel.gateway.http_server import HttpServer
from app.kernel.gateway.keys import KERNEL
from app.kernel.gateway.personalize import PSP_VERSION_HEADER, apply


@pytest.fixture
async def client(kernel):
    """The personal routes alone (no guard: the caller's identity comes from test headers)."""
    app = web.Application()
    app[KERNEL] = kernel
    personal_routes.add_routes(app)
    await kernel.personal.ready()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = HttpServer(app)
    await server.start(sock)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as c:
            yield c
    finally:
        await server.close()


def as_app(app: str, *scopes: str) -> dict[str, str]:
    return {"X-ByenatOS-App": app, "X-ByenatOS-Scopes": ",".join(scopes)}


NOTES = as_app("notes-app", "hinata:write")
CHAT = as_app("chat-app", "hinata:read", "hinata:write", "psp:read")
ADMIN = as_app("byenatos", "admin")


async def test_submit_one_or_a_batch_idempotently(client):
    r = await client.post("/api/hinata", json={"id": "r1", "highlight": "hello"}, headers=NOTES)
    assert r.status == 201 and (await r.json())["data"] == [{"id": "r1", "status": "created"}]
    r = await client.post(
        "/api/hinata", json=[{"id": "r1", "highlight": "hello"}, {"id": "r2", "note": "n"}], headers=NOTES
    )
    assert r.status == 201
    assert (await r.json())["data"] == [
        {"id": "r1", "status": "unchanged"},
        {"id": "r2", "status": "created"},
    ]
    r = await client.post(
        "/api/hinata", json={"records": [{"id": "r1", "highlight": "hello"}]}, headers=NOTES
    )
    assert r.status == 200  # nothing new
    got = await (await client.get("/api/hinata/r1", headers=NOTES)).json()
    assert (
        got["highlight"] == "hello"
        and got["source"] == "notes-app"
        and got["enhancement"]["method"] == "keywords"
    )


async def test_bad_records_get_field_level_errors_and_nothing_is_stored(client):
    r = await client.post(
        "/api/hinata",
        json=[{"id": "ok", "highlight": "fine"}, {"highlight": "x" * 10_001, "access": "world"}],
        headers=NOTES,
    )
    assert r.status == 400
    err = (await r.json())["error"]
    assert err["code"] == "invalid_hinata"
    assert {(p["index"], p["field"]) for p in err["problems"]} == {(1, "highlight"), (1, "access")}
    assert (await client.get("/api/hinata/ok", headers=NOTES)).status == 404  # the batch is all or nothing
    r = await client.post("/api/hinata", data=b"{broken", headers=NOTES)
    assert r.status == 400 and "not valid JSON" in (await r.json())["error"]["message"]
    r = await client.post("/api/hinata", json=[{"highlight": "a"}] * 101, headers=NOTES)
    assert r.status == 400 and "limit is 100" in (await r.json())["error"]["message"]


async def test_search_paginates_and_respects_access(client):
    await client.post(
        "/api/hinata",
        json=[
            {
                "id": f"s{i}",
                "highlight": f"chess opening {i}",
                "tag": ["chess"],
                "timestamp": f"2024-03-{i + 1:02d}T12:00:00Z",
                "access": "shared" if i % 2 else "private",
            }
            for i in range(6)
        ],
        headers=NOTES,
    )
    page = await (await client.get("/api/hinata", params={"q": "chess", "limit": "2"}, headers=NOTES)).json()
    assert page["total"] == 6 and len(page["data"]) == 2 and page["next_offset"] == 2
    other = await (await client.get("/api/hinata", params={"tag": "chess"}, headers=CHAT)).json()
    assert other["total"] == 3 and {d["access"] for d in other["data"]} == {"shared"}
    ranged = await (
        await client.get(
            "/api/hinata", params={"since": "2024-03-04", "until": "2024-03-05T23:00:00"}, headers=NOTES
        )
    ).json()
    assert [d["id"] for d in ranged["data"]] == ["s4", "s3"]
    bad = await client.get("/api/hinata", params={"since": "soon"}, headers=NOTES)
    assert bad.status == 400 and (await bad.json())["error"]["problems"][0]["field"] == "since"
    assert (await client.get("/api/hinata", params={"limit": "x"}, headers=NOTES)).status == 400


async def test_another_apps_private_record_is_not_found_and_cannot_be_deleted(client):
    await client.post("/api/hinata", json={"id": "mine", "highlight": "secret"}, headers=NOTES)
    assert (await client.get("/api/hinata/mine", headers=CHAT)).status == 404
    assert (await client.delete("/api/hinata/mine", headers=CHAT)).status == 404
    r = await client.post("/api/hinata", json={"id": "mine", "highlight": "overwritten"}, headers=CHAT)
    assert r.status == 403
    assert (await client.delete("/api/hinata/mine", headers=NOTES)).status == 200
    assert (await client.get("/api/hinata/mine", headers=NOTES)).status == 404


async def test_import_jsonl_body_and_markdown_folder(client, tmp_path):
    lines = b'{"id": "j1", "highlight": "one"}\nnot json\n{"id": "j2", "highlight": "two"}\n'
    r = await client.post(
        "/api/hinata/import", data=lines, headers={**NOTES, "Content-Type": "application/x-ndjson"}
    )
    report = await r.json()
    assert r.status == 200 and report["created"] == 2 and report["error_count"] == 1
    assert report["errors"][0].startswith("line 2: not valid JSON")
    (tmp_path / "a.md").write_text("# Alpha\nbody #tagged\n")
    r = await client.post(
        "/api/hinata/import", json={"format": "markdown", "path": str(tmp_path)}, headers=NOTES
    )
    assert r.status == 403  # reading this machine's disk is the user's call
    r = await client.post(
        "/api/hinata/import", json={"format": "markdown", "path": str(tmp_path)}, headers=ADMIN
    )
    assert r.status == 200 and (await r.json())["created"] == 1


async def test_preview_explains_and_control_needs_admin(client, kernel):
    await client.post(
        "/api/hinata", json={"id": "p1", "highlight": "I am learning Rust", "access": "shared"}, headers=NOTES
    )
    r = await client.get("/api/psp/preview", params={"q": "Rust"}, headers=CHAT)
    data = await r.json()
    assert r.status == 200 and data["app"] == "chat-app" and data["version"].startswith("psp-")
    item = next(i for i in data["items"] if i["id"] == "p1")
    assert set(item["scores"]) >= {"importance", "relevance", "freshness", "frequency", "total"}
    assert data["injects"] is False
    assert (await client.get("/api/psp/preview", params={"app": "notes-app"}, headers=CHAT)).status == 403
    assert (
        await client.get("/api/psp/preview", params={"app": "notes-app", "q": "Rust"}, headers=ADMIN)
    ).status == 200
    for method, path, body in [
        ("POST", "/api/psp/pause", None),
        ("POST", "/api/psp/rules", {"text": "x"}),
        ("GET", "/api/psp/export", None),
        ("POST", "/api/psp/delete-all", {}),
        ("GET", "/api/psp/audit", None),
        ("PUT", "/api/psp/apps/notes-app", {"inject": True}),
    ]:
        r = await client.request(method, path, json=body, headers=CHAT)
        assert r.status == 403, path
    # an app may opt itself in
    assert (await client.put("/api/psp/apps/chat-app", json={"inject": True}, headers=CHAT)).status == 200
    assert kernel.personal.injection("chat-app")


async def test_user_controls_rules_pause_export_delete_all(client, kernel):
    await client.post("/api/hinata", json={"id": "u1", "highlight": "likes jazz"}, headers=NOTES)
    rule = await (
        await client.post("/api/psp/rules", json={"text": "Be concise", "pinned": True}, headers=ADMIN)
    ).json()
    r = await client.patch(f"/api/psp/rules/{rule['id']}", json={"text": "Be very concise"}, headers=ADMIN)
    assert (await r.json())["text"] == "Be very concise"
    assert (await client.patch("/api/psp/rules/999", json={"pinned": False}, headers=ADMIN)).status == 404
    assert (await client.post("/api/psp/rules", json={"text": "   "}, headers=ADMIN)).status == 400
    rules = (await (await client.get("/api/psp/rules", headers=CHAT)).json())["data"]
    assert [r["text"] for r in rules] == ["Be very concise"]
    assert (await (await client.post("/api/psp/pause", headers=ADMIN)).json()) == {"paused": True}
    assert kernel.personal.paused
    await client.post("/api/psp/resume", headers=ADMIN)
    export = await (await client.get("/api/psp/export", headers=ADMIN)).read()
    lines = [orjson.loads(x) for x in export.splitlines()]
    assert any(line.get("id") == "u1" for line in lines) and any(
        line.get("kind") == "core_rule" for line in lines
    )
    r = await client.post("/api/psp/delete-all", json={"confirm": "yes"}, headers=ADMIN)
    assert r.status == 400 and "delete everything" in (await r.json())["error"]["message"]
    r = await client.post("/api/psp/delete-all", json={"confirm": "delete everything"}, headers=ADMIN)
    assert (await r.json()) == {"deleted_records": 1}
    assert (await (await client.get("/api/hinata", headers=ADMIN)).json())["total"] == 0
    settings = await (
        await client.patch("/api/psp/settings", json={"psp_max_tokens": 512}, headers=ADMIN)
    ).json()
    assert settings["psp_max_tokens"] == 512
    r = await client.patch("/api/psp/settings", json={"psp_max_tokens": "lots"}, headers=ADMIN)
    assert r.status == 400


async def test_the_gateway_hook_injects_and_names_the_version(kernel_with_openai):
    kernel = kernel_with_openai
    personal = kernel.personal
    await personal.ready()
    personal_caller = _caller("app-x")
    await personal.add({"id": "h1", "highlight": "My dog is called Biscuit"}, personal_caller)
    body = {
        "model": "fake/gpt-fake-mini",
        "messages": [{"role": "user", "content": "what is my dog called?"}],
    }
    assert await apply(kernel, "app-x", personal_caller.scopes, body) is None  # not opted in yet
    personal.set_injection("app-x", True)
    version = await apply(kernel, "app-x", personal_caller.scopes, body)
    assert version and "Biscuit" in body["messages"][0]["content"]
    assert PSP_VERSION_HEADER == "X-ByenatOS-PSP-Version"
    unknown = {"model": "no-such-model", "messages": [{"role": "user", "content": "dog?"}]}
    assert await apply(kernel, "app-x", personal_caller.scopes, unknown)  # sized for a default window


def _caller(app):
    from app.kernel.personal.service import Caller

    return Caller(app, frozenset({"hinata:write"}))


async def test_a_question_is_ranked_with_score_words_and_passage(client):
    await client.post(
        "/api/hinata",
        json=[
            {"id": "ana", "highlight": "Ana went to the climbing gym with her brother on Tuesday"},
            {"id": "bag", "highlight": "Bought a new gym bag"},
            {"id": "tax", "highlight": "File the tax return"},
        ],
        headers=NOTES,
    )
    r = await client.get("/api/hinata", params={"q": "When did Ana go to the climbing gym?"}, headers=NOTES)
    page = await r.json()
    assert r.status == 200 and page["data"][0]["id"] == "ana"
    assert {"score", "matched", "passage"} <= set(page["data"][0]) and "climbing" in page["data"][0][
        "matched"
    ]
    assert "tax" not in {d["id"] for d in page["data"]}
    exact = await (await client.get("/api/hinata", params={"phrase": "gym bag"}, headers=NOTES)).json()
    assert [d["id"] for d in exact["data"]] == ["bag"]
    bad = await client.get("/api/hinata", params={"q": "gym", "mode": "psychic"}, headers=NOTES)
    assert bad.status == 400 and "mode" in (await bad.json())["error"]["message"]
