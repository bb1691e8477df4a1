"""/api/documents over real HTTP through the whole gateway (guard, admin token, lazy route group)."""

from __future__ import annotations

import httpx
import pytest

from app.kernel.gateway.server import GatewayServer
from tests.kernel.documents.files import write_encrypted_pdf, write_pdf


@pytest.fixture
async def api(kernel):
    await kernel.personal.ready()
    server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
    headers = {"Authorization": f"Bearer {kernel.apps.admin_token()}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, trust_env=False, timeout=60) as c:
            yield c
    finally:
        await server.stop()


async def test_folders_status_search(api, tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    write_pdf(root / "manual.pdf", ["Contents", "Descale the espresso machine monthly."])
    write_encrypted_pdf(root / "bank.pdf", ["statement"])
    r = await api.post("/api/documents/folders", json={"path": str(root), "wait": True})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "added" and body["report"]["indexed"] == 1 and body["report"]["skipped"] == 1
    r = await api.post("/api/documents/folders", json={"path": str(root), "wait": True})  # again: a rescan
    assert r.status_code == 200 and r.json()["status"] == "unchanged" and r.json()["report"]["unchanged"] == 2

    (folder,) = (await api.get("/api/documents/folders")).json()["data"]
    assert folder["path"] == str(root) and folder["files"] == 1 and folder["pages"] == 2 and folder["skipped"] == 1

    status = (await api.get("/api/documents/status")).json()
    assert status["state"] == "idle" and status["skipped_total"] == 1
    assert status["skipped"][0]["code"] == "encrypted" and status["skipped"][0]["path"].endswith("bank.pdf")

    r = await api.get("/api/documents/search", params={"q": "how often to descale the espresso machine"})
    assert r.status_code == 200
    (hit, *_) = r.json()["data"]
    assert hit["page"] == 2 and hit["address"] == (root / "manual.pdf").as_uri() + "#page=2"
    assert hit["citation"] == "manual.pdf · page 2"

    r = await api.post("/api/documents/scan", json={"path": str(root)})
    assert r.status_code == 200 and r.json()["data"][0]["unchanged"] == 2

    r = await api.delete("/api/documents/folders", params={"path": str(root)})
    assert r.status_code == 200 and r.json()["forgotten_files"] == 2
    assert (await api.get("/api/documents/search", params={"q": "espresso"})).json()["data"] == []


@pytest.mark.parametrize("method,url,kw,status,words", [
    ("post", "/api/documents/folders", {"json": {"path": "/no/such/folder"}}, 400, "no such folder"),
    ("post", "/api/documents/folders", {"json": {"path": ""}}, 400, "path"),
    ("post", "/api/documents/folders", {"json": {"path": "/tmp", "access": "everyone"}}, 400, "access"),
    ("post", "/api/documents/folders", {"json": {"path": "/tmp", "colour": "red"}}, 400, "colour"),
    ("post", "/api/documents/folders", {"json": {"path": "/tmp", "wait": "yes"}}, 400, "wait"),
    ("post", "/api/documents/folders", {"content": b"[1, 2]"}, 400, "JSON object"),
    ("delete", "/api/documents/folders", {"params": {"path": "/never/added"}}, 404, "not an indexed folder"),
    ("delete", "/api/documents/folders", {}, 400, "path"),
    ("get", "/api/documents/search", {}, 400, "q"),
    ("get", "/api/documents/search", {"params": {"q": "x", "k": "0"}}, 400, "k"),
    ("get", "/api/documents/search", {"params": {"q": "x", "k": "many"}}, 400, "k"),
    ("get", "/api/documents/status", {"params": {"skipped_limit": "-1"}}, 400, "skipped_limit"),
    ("post", "/api/documents/scan", {"json": {"path": "/not/indexed"}}, 400, "not an indexed folder"),
])
async def test_bad_requests_are_4xx_in_the_api_format(api, method, url, kw, status, words):
    r = await getattr(api, method)(url, **kw) if method != "delete" else await api.request("DELETE", url, **kw)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


async def test_needs_the_admin_scope(api, kernel):
    _, token = kernel.apps.register("notes", ["chat", "hinata:read", "hinata:write"])
    r = await api.get("/api/documents/status", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    r = await api.get("/api/documents/status", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_described_in_openapi(api):
    doc = (await api.get("/openapi.json")).json()
    for path in ("/api/documents/folders", "/api/documents/status", "/api/documents/search", "/api/documents/scan"):
        assert path in doc["paths"], path
    assert set(doc["paths"]["/api/documents/folders"]) == {"get", "post", "delete"}
    assert "DocumentHit" in doc["components"]["schemas"]
