"""Every security rule of the gateway, each with a test that fails without it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3

import httpx
import openai
import pytest

from app.kernel.gateway.middleware import host_name, required_scope
from app.kernel.gateway.server import GatewayServer
from tests.fakes.upstream import Fault

CHAT = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def start_gateway(kernel_with_openai):
    """Start a gateway after changing its settings: `await start_gateway(max_body_mb=0.001)`."""
    servers = []

    async def start(**gateway_settings):
        for key, value in gateway_settings.items():
            setattr(kernel_with_openai.settings.gateway, key, value)
        server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def _client(server, token: str | None = None, **headers: str) -> httpx.AsyncClient:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(base_url=server.url, trust_env=False, headers=headers)


# -- binding -----------------------------------------------------------------------------------
async def test_binds_loopback_by_default(kernel_with_openai):
    server = await GatewayServer(kernel_with_openai, port=0).start()
    try:
        assert server.host == "127.0.0.1"
        assert [a[0] for a in server.addresses] == ["127.0.0.1"]
    finally:
        await server.stop()


async def test_another_address_warns(kernel_with_openai, caplog):
    with caplog.at_level(logging.WARNING):
        server = await GatewayServer(kernel_with_openai, host="0.0.0.0", port=0).start()
    await server.stop()
    assert any("other machines on the network" in r.message for r in caplog.records)


# -- tokens and scopes -------------------------------------------------------------------------
async def test_missing_token_is_401_in_openai_format(anon):
    r = await anon.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 401
    assert (
        r.json()["error"]["type"] == "authentication_error"
        and "missing API token" in r.json()["error"]["message"]
    )


async def test_wrong_token_is_401_with_the_sdk(gateway):
    c = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="byn-" + "x" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await c.chat.completions.create(**CHAT)
    await c.close()


async def test_revoked_token_stops_working(client, kernel_with_openai):
    assert [m.id async for m in client.models.list()]
    kernel_with_openai.apps.revoke("test-app")
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()


async def test_revocation_by_another_process_reaches_the_gateway(gateway, kernel_with_openai, app_token):
    """The CLI revokes in its own process; the daemon's cache follows the store (PRAGMA data_version)."""
    apps = kernel_with_openai.apps
    await apps.stop()
    await apps.start(watch_interval=0.01)
    async with _client(gateway, app_token) as c:
        assert (await c.get("/v1/models")).status_code == 200
        apps.reloaded.clear()
        con = sqlite3.connect(kernel_with_openai.paths.database)
        con.execute("UPDATE app SET revoked_at = 1 WHERE id = 'test-app'")
        con.commit()
        con.close()
        await asyncio.wait_for(apps.reloaded.wait(), 5)
        assert (await c.get("/v1/models")).status_code == 401


async def test_only_changes_to_the_apps_reload_the_token_cache(kernel_with_openai, app_token):
    """Another connection's commits to other tables (the audit writer's, every half second under
    load) must not make the daemon re-read every app; a change to an app must."""
    apps = kernel_with_openai.apps
    con = sqlite3.connect(kernel_with_openai.paths.database)

    def audit_row_from_another_connection() -> None:
        con.execute("INSERT INTO audit (ts, app, endpoint, model, provider, stream, outcome, latency_ms, "
                    "prompt_tokens, completion_tokens, cost) VALUES (1, 'test-app', '/v1/chat/completions', "
                    "'m', 'p', 0, 'ok', 1, 1, 1, 0)")
        con.commit()

    try:
        audit_row_from_another_connection()
        apps.follow_store()  # takes in the fixture's registration (made on the kernel's own connection)
        audit_row_from_another_connection()
        assert apps.follow_store() is False
        assert apps.authenticate(app_token) is not None
        con.execute("UPDATE app SET rate_limit_rpm = 7 WHERE id = 'test-app'")
        con.commit()
        assert apps.follow_store() is True
        assert apps.authenticate(app_token).limits.rate_limit_rpm == 7
        con.execute("DELETE FROM app WHERE id = 'test-app'")
        con.commit()
        assert apps.follow_store() is True
        assert apps.authenticate(app_token) is None
    finally:
        con.close()


async def test_tokens_are_stored_hashed(kernel_with_openai, app_token):
    con = sqlite3.connect(kernel_with_openai.paths.database)
    dump = "\n".join(con.iterdump())
    con.close()
    assert app_token not in dump
    assert hashlib.sha256(app_token.encode()).hexdigest() in dump


async def test_admin_token_lives_in_the_secret_store_not_the_database(kernel_with_openai, admin_token):
    assert kernel_with_openai.secrets.get("gateway:admin-token") == admin_token
    con = sqlite3.connect(kernel_with_openai.paths.database)
    assert admin_token not in "\n".join(con.iterdump())
    con.close()
    assert kernel_with_openai.apps.admin_token() == admin_token  # stable across calls


async def test_missing_scope_is_403(http):
    for method, path in (
        ("GET", "/api/apps"),
        ("GET", "/metrics"),
        ("GET", "/api/events"),
        ("POST", "/api/models/scan"),
        ("GET", "/api/audit"),
        ("POST", "/api/socket/swap"),
    ):
        r = await http.request(method, path)
        assert r.status_code == 403, path
        assert "lacks the 'admin' scope" in r.json()["error"]["message"]


async def test_app_without_chat_scope_cannot_chat(gateway, kernel_with_openai):
    _, token = kernel_with_openai.apps.register("writer", ["hinata:write"])
    async with _client(gateway, token) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 403 and "'chat' scope" in r.json()["error"]["message"]


def test_scope_policy_for_routes_of_other_subsystems():
    assert required_scope("GET", "/api/hinata/records") == "hinata:read"
    assert required_scope("POST", "/api/hinata/records") == "hinata:write"
    assert required_scope("DELETE", "/api/hinata/records/1") == "hinata:write"
    assert required_scope("GET", "/api/psp/preview") == "psp:read"
    assert required_scope("GET", "/api/socket") == "chat"
    assert required_scope("POST", "/api/socket/swap") == "admin"
    assert required_scope("GET", "/api/something-new") == "admin"  # deny by default


async def test_admin_token_may_do_everything(admin):
    for path in ("/api/apps", "/metrics", "/api/audit", "/api/socket", "/v1/models"):
        assert (await admin.get(path)).status_code == 200, path


# -- registration ------------------------------------------------------------------------------
async def test_apps_register_themselves_for_chat(anon):
    r = await anon.post("/api/apps/register", json={"name": "My Editor", "scopes": ["chat"]})
    assert r.status_code == 201
    token = r.json()["token"]
    assert r.json()["id"] == "my-editor" and r.json()["scopes"] == ["chat"]
    r = await anon.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


async def test_privileged_scopes_need_the_admin_token(anon, admin):
    r = await anon.post("/api/apps/register", json={"name": "snoop", "scopes": ["chat", "hinata:read"]})
    assert r.status_code == 403 and "hinata:read" in r.json()["error"]["message"]
    r = await anon.post("/api/apps/register", json={"name": "snoop", "scopes": ["admin"]})
    assert r.status_code == 403
    r = await admin.post("/api/apps/register", json={"name": "snoop", "scopes": ["chat", "hinata:read"]})
    assert r.status_code == 201 and r.json()["scopes"] == ["chat", "hinata:read"]


async def test_a_taken_name_cannot_be_registered_again_without_admin(anon, admin, app_token):
    r = await anon.post("/api/apps/register", json={"name": "test-app"})
    assert r.status_code == 409
    r = await anon.post("/api/apps/register", json={"name": "test-app", "replace": True})
    assert r.status_code == 403
    r = await admin.post("/api/apps/register", json={"name": "test-app", "replace": True})
    assert r.status_code == 201 and r.json()["token"] != app_token


async def test_closed_registration_needs_the_admin_token(start_gateway):
    server = await start_gateway(open_registration=False)
    async with _client(server) as c:
        r = await c.post("/api/apps/register", json={"name": "x"})
    assert r.status_code == 403 and "admin token" in r.json()["error"]["message"]


async def test_bad_registration_is_400(anon):
    r = await anon.post("/api/apps/register", json={"name": "x", "scopes": ["root"]})
    assert r.status_code == 400 and "unknown root" in r.json()["error"]["message"]
    r = await anon.post("/api/apps/register", json={"scopes": ["chat"]})
    assert r.status_code == 400 and "name" in r.json()["error"]["message"]


# -- DNS rebinding and cross-origin --------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8484", "127.0.0.1.nip.io", "[::2]:80"])
async def test_foreign_host_header_is_refused(gateway, app_token, host):
    async with _client(gateway, app_token, Host=host) as c:
        r = await c.get("/v1/models")
    assert r.status_code == 403 and "DNS rebinding" in r.json()["error"]["message"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8484", "127.0.0.1:1", "[::1]:8484"])
async def test_local_host_names_are_accepted(gateway, app_token, host):
    async with _client(gateway, app_token, Host=host) as c:
        assert (await c.get("/v1/models")).status_code == 200


async def test_a_configured_host_name_is_accepted(start_gateway, app_token):
    server = await start_gateway(allowed_hosts=["mybox.lan"])
    async with _client(server, app_token, Host="mybox.lan:8484") as c:
        assert (await c.get("/v1/models")).status_code == 200


def test_host_name_parsing():
    assert host_name("LocalHost:80") == "localhost"
    assert host_name("[::1]:8484") == "[::1]"
    assert host_name("127.0.0.1") == "127.0.0.1"


async def test_cross_origin_request_is_refused(http):
    r = await http.post("/v1/chat/completions", json=CHAT, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]["message"]
    r = await http.options(
        "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


async def test_an_allowed_origin_gets_cors_headers(start_gateway, app_token):
    server = await start_gateway(allowed_origins=["https://notes.example"])
    async with _client(server, app_token, Origin="https://notes.example") as c:
        pre = await c.options(
            "/v1/chat/completions",
            headers={
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "https://notes.example"
        assert "POST" in pre.headers["access-control-allow-methods"]
        r = await c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://notes.example"


# -- body limits ---------------------------------------------------------------------------------
async def test_body_over_the_limit_is_413(start_gateway, app_token):
    server = await start_gateway(max_body_mb=0.01)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 20_000}]}
    async with _client(server, app_token) as c:
        r = await c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413 and "too large" in r.json()["error"]["message"]
        r = await c.post("/v1/messages", json={**big, "max_tokens": 5})
        assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"


async def test_a_chunk_extension_over_16_kib_is_400_in_the_callers_format(gateway, app_token):
    """Node's CVE-2024-22019: chunk extensions (and trailers) are bounded as the head is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    body = b'{"model": "default"}'
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                 b"Authorization: Bearer " + app_token.encode() + b"\r\n\r\n"
                 + b"%x;" % len(body) + b"e" * 20_000 + b"\r\n" + body + b"\r\n0\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"Connection: close" in head
    assert "extensions are too large" in json.loads(payload)["error"]["message"]


async def test_json_nested_too_deep_is_400(http):
    deep: dict = {"x": 1}
    for _ in range(100):
        deep = {"x": deep}
    r = await http.post("/v1/chat/completions", json={**CHAT, "metadata": deep})
    assert r.status_code == 400 and "nested deeper than 64" in r.json()["error"]["message"]


async def test_wide_but_shallow_json_is_fine(http):
    wide = {"messages": [{"role": "user", "content": [{"type": "text", "text": str(i)} for i in range(200)]}]}
    r = await http.post("/v1/chat/completions", json={**CHAT, **wide})
    assert r.status_code == 200


# -- limits --------------------------------------------------------------------------------------
async def test_rate_limit_is_429_with_retry_after(http, kernel_with_openai):
    kernel_with_openai.apps.set_limits("test-app", rate_limit_rpm=2)
    assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
    r = await http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "rate limit of 2 requests per minute" in r.json()["error"]["message"]
    assert (await http.get("/v1/models")).status_code == 200  # listing is not inference


async def test_token_budget_is_429_once_spent(http, kernel_with_openai):
    kernel_with_openai.apps.set_limits("test-app", daily_token_budget=5)
    assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 200
    kernel_with_openai.accounting.drain()  # the spending of the finished request is counted
    r = await http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 429 and "daily token budget" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "budget_exceeded" and "00:00 UTC" in r.json()["error"]["message"]


async def test_cost_budget_is_429_once_spent(http, kernel_with_openai):
    spec = kernel_with_openai.registry.find_model("fake/gpt-fake-mini")
    kernel_with_openai.registry.upsert_models(
        "fake", [spec.model_copy(update={"input_cost_per_token": 0.01})]
    )
    kernel_with_openai.apps.set_limits("test-app", daily_cost_budget=0.001)
    body = {**CHAT, "model": "fake/gpt-fake-mini"}
    assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
    kernel_with_openai.accounting.drain()
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 429 and "daily cost budget" in r.json()["error"]["message"]


async def test_full_backend_queue_is_503_with_retry_after(http, kernel_with_openai, openai_upstream):
    policy = kernel_with_openai.router.policy
    policy.max_concurrency_cloud, policy.max_queue = 1, 0  # one in flight, nobody waiting
    openai_upstream.fault = Fault(kind="hang")
    first = asyncio.create_task(http.post("/v1/chat/completions", json=CHAT))
    await openai_upstream.hanging.wait()
    r = await http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "overloaded_error" and "busy" in r.json()["error"]["message"]
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first


# -- audit ---------------------------------------------------------------------------------------
async def test_every_request_gets_an_audit_row_without_the_prompt(http, anon, kernel_with_openai):
    await http.post(
        "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "secret plan"}]}
    )
    await http.post("/v1/chat/completions", json={"model": "nope", "messages": CHAT["messages"]})
    await http.post("/v1/chat/completions", content=b"{bad")
    await anon.post("/v1/chat/completions", json=CHAT)
    await kernel_with_openai.accounting.settle()
    rows = await kernel_with_openai.accounting.audit.recent(limit=10)
    assert [r["outcome"] for r in rows] == ["missing_token", "invalid_json", "model_not_found", "ok"]
    ok = rows[-1]
    assert (
        ok["app"] == "test-app"
        and ok["endpoint"] == "/v1/chat/completions"
        and ok["model"].startswith("fake/")
    )
    assert ok["prompt_tokens"] > 0 and ok["completion_tokens"] > 0 and ok["latency_ms"] > 0
    assert all(r["prompt"] is None for r in rows)
    con = sqlite3.connect(kernel_with_openai.paths.database)
    assert "secret plan" not in "\n".join(con.iterdump())
    con.close()


async def test_prompt_is_audited_only_when_turned_on(start_gateway, kernel_with_openai, app_token):
    server = await start_gateway(audit_prompts=True)
    async with _client(server, app_token) as c:
        await c.post(
            "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "secret plan"}]}
        )
    await kernel_with_openai.accounting.settle()
    row = (await kernel_with_openai.accounting.audit.recent(limit=1))[0]
    assert "secret plan" in row["prompt"]


# -- cancellation --------------------------------------------------------------------------------
async def test_client_leaving_mid_stream_cancels_the_upstream(gateway, app_token, openai_upstream):
    openai_upstream.chunk_delay = 0.2  # slow generation: the client leaves long before the end
    async with (
        _client(gateway, app_token) as c,
        c.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                break  # got the first event; hang up
    await asyncio.wait_for(openai_upstream.cancelled.wait(), 5)
    assert openai_upstream.streams_finished == 0
