"""The ByenatOS API under /api, /metrics and /openapi.json."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest

CHAT = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}


async def test_apps_list_me_limit_and_revoke(admin, http):
    r = await admin.get("/api/apps")
    assert {a["id"] for a in r.json()["data"]} == {"byenatos", "test-app"}
    assert all("token" not in a and "token_hash" not in a for a in r.json()["data"])
    me = (await http.get("/api/apps/me")).json()
    assert me["id"] == "test-app" and me["scopes"] == ["chat"]
    r = await admin.patch("/api/apps/test-app", json={"rate_limit_rpm": 10, "daily_cost_budget": 1.5})
    assert r.status_code == 200 and r.json()["rate_limit_rpm"] == 10 and r.json()["daily_cost_budget"] == 1.5
    r = await admin.patch("/api/apps/test-app", json={"colour": "red"})
    assert r.status_code == 400 and "colour" in r.json()["error"]["message"]
    r = await admin.delete("/api/apps/nobody")
    assert r.status_code == 404 and "test-app" in r.json()["error"]["message"]
    r = await admin.delete("/api/apps/byenatos")
    assert r.status_code == 403
    assert (await admin.delete("/api/apps/test-app")).json()["revoked"] is True
    assert (await http.get("/api/apps/me")).status_code == 401


async def test_models_api_and_scan(http, admin):
    r = await http.get("/api/models")
    assert {m["id"] for m in r.json()["data"]} == {"fake/gpt-fake-mini", "fake/gpt-fake-large"}
    assert r.json()["data"][0]["context_window"] > 0


async def test_usage_per_app_and_per_model(http, admin, kernel_with_openai):
    _, other = kernel_with_openai.apps.register("other", ["chat"])
    await http.post("/v1/chat/completions", json=CHAT)
    await http.post("/v1/chat/completions", json=CHAT)
    await admin.post("/v1/chat/completions", json={"model": "nope", "messages": CHAT["messages"]})
    async with httpx.AsyncClient(
        base_url=str(http.base_url), trust_env=False, headers={"Authorization": f"Bearer {other}"}
    ) as o:
        await o.post("/v1/chat/completions", json=CHAT)
        mine = (await o.get("/api/usage")).json()["data"]
    assert [r["app"] for r in mine] == ["other"]  # an app sees its own usage only
    rows = {r["app"]: r for r in (await admin.get("/api/usage")).json()["data"]}
    assert rows["test-app"]["requests"] == 2 and rows["test-app"]["errors"] == 0
    assert (
        rows["test-app"]["total_tokens"]
        == rows["test-app"]["prompt_tokens"] + rows["test-app"]["completion_tokens"]
        > 0
    )
    assert rows["byenatos"]["errors"] == 1
    by_model = (await admin.get("/api/usage", params={"by": "model"})).json()["data"]
    assert any(r["model"].startswith("fake/") and r["app"] == "test-app" for r in by_model)
    assert (await admin.get("/api/usage", params={"since": "2999-01-01"})).json()["data"] == []
    r = await admin.get("/api/usage", params={"since": "yesterday"})
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]


async def test_audit_api(admin, http):
    await http.post("/v1/chat/completions", json=CHAT)
    rows = (await admin.get("/api/audit", params={"limit": 5})).json()["data"]
    assert rows[0]["app"] == "test-app" and rows[0]["outcome"] == "ok"
    assert (await admin.get("/api/audit", params={"limit": 0})).status_code == 400


async def test_metrics_in_prometheus_format(admin, http):
    await http.post("/v1/chat/completions", json=CHAT)
    await http.post("/v1/chat/completions", json={"model": "nope", "messages": CHAT["messages"]})
    r = await admin.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE byenatos_requests_total counter" in text
    assert (
        'byenatos_requests_total{app="test-app",model="fake/gpt-fake-large",outcome="ok"} 1' in text
        or 'byenatos_requests_total{app="test-app",model="fake/gpt-fake-mini",outcome="ok"} 1' in text
    )
    assert 'outcome="model_not_found"} 1' in text
    assert "byenatos_request_duration_seconds_bucket{" in text and 'le="+Inf"} ' in text
    assert 'kind="completion"' in text


async def test_events_stream_over_sse(admin, http):
    async with admin.stream("GET", "/api/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        assert (await anext(lines)) == ": connected"
        asyncio.get_running_loop().create_task(http.post("/v1/chat/completions", json=CHAT))
        event = data = None
        async for line in lines:
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "RequestFinished":
                data = orjson.loads(line[len("data: ") :])
                break
    assert data["app"] == "test-app" and data["outcome"] == "ok"


async def test_openapi_describes_every_route(anon, gateway):
    r = await anon.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    served = set()
    for route in gateway.app.router.routes():
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":
            served.add((route.method.lower(), re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)))
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served <= described, served - described
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert {"200", "400", "401", "403", "429", "503"} <= set(chat["responses"])
    assert doc["components"]["schemas"]["ChatCompletionRequest"]["required"] == ["model", "messages"]
    assert "chat" in chat["description"]


@pytest.mark.parametrize("path", ["/api/health", "/openapi.json"])
async def test_public_routes_still_check_the_host(anon, path):
    r = await anon.get(path, headers={"Host": "evil.example"})
    assert r.status_code == 403


@pytest.mark.parametrize(
    "limits",
    [
        {"daily_token_budget": 2**63},  # found by the fuzzer: SQLite could not store it, a 500
        {"rate_limit_rpm": 10**30},
        {"rate_limit_rpm": 1.5},
        {"daily_cost_budget": -1},
        {"rate_limit_rpm": True},
    ],
)
async def test_limits_out_of_range_are_a_400_not_a_500(admin, http, limits):
    r = await admin.post("/api/apps/register", json={"name": "limited", **limits})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == next(iter(limits))
    r = await admin.patch("/api/apps/test-app", json=limits)
    assert r.status_code == 400, r.text
    assert (await admin.get("/api/apps/me")).status_code == 200  # still serving


async def test_the_largest_storable_limit_is_kept(admin, http):
    r = await admin.patch("/api/apps/test-app", json={"daily_token_budget": 2**63 - 1, "rate_limit_rpm": 5.0})
    assert (
        r.status_code == 200
        and r.json()["daily_token_budget"] == 2**63 - 1
        and r.json()["rate_limit_rpm"] == 5
    )


async def test_an_app_cannot_give_itself_limits(anon):
    r = await anon.post("/api/apps/register", json={"name": "self-limited", "rate_limit_rpm": 5})
    assert r.status_code == 403 and "rate_limit_rpm" in r.json()["error"]["message"]
    r = await anon.post("/api/apps/register", json={"name": "self-limited", "rate_limit_rpm": -5})
    assert r.status_code == 400  # a bad value is a 400 whoever sends it
    r = await anon.post("/api/apps/register", json={"name": "plain", "rate_limit_rpm": None})
    assert r.status_code == 201


async def test_openapi_documents_what_streams_and_exports_really_send(anon):
    """Found by the fuzzer: the export's JSONL was documented as JSON, each SSE event as a bare string."""
    doc = (await anon.get("/openapi.json")).json()
    paths = doc["paths"]
    assert set(paths["/api/psp/export"]["get"]["responses"]["200"]["content"]) == {"application/x-ndjson"}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/messages", "/api/events"):
        op = next(iter(paths[path].values()))
        event = op["responses"]["200"]["content"]["text/event-stream"]["schema"]
        assert event["type"] == "object" and {"data", "event"} <= set(event["properties"]), path
    # Request bodies of the socket and personal routes are described, not left out.
    assert paths["/api/socket/swap"]["post"]["requestBody"]["content"]["application/json"]
    assert set(paths["/api/hinata/import"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "text/plain",
    }
    hinata = doc["components"]["schemas"]["HinataIn"]
    assert {"type": "null"} in hinata["properties"]["id"]["anyOf"]  # {"id": null} is accepted
