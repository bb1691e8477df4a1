"""/api/mcp through the real gateway on loopback: the servers the kernel hosts, against the
faulty fake and mcp-server-time, every answer checked against the live OpenAPI document."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest

from app.kernel.gateway.server import GatewayServer

ROOT = Path(__file__).resolve().parents[3]
FAULTY = {"command": sys.executable, "args": ["-m", "tests.fakes.mcp_faulty"], "cwd": str(ROOT)}
TIME = str(Path(sys.executable).parent / "mcp-server-time")


@pytest.fixture
async def gateway(kernel):
    server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def admin(gateway, kernel):
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=60,
                                 headers={"Authorization": f"Bearer {kernel.apps.admin_token()}"}) as c:
        yield c


@pytest.fixture
async def documented(admin):
    """check(response, path, method): the body against the document's schema for its status."""
    doc = (await admin.get("/openapi.json")).json()

    def check(response: httpx.Response, path: str, method: str = "get") -> dict:
        operation = doc["paths"][path][method]
        answer = operation["responses"][str(response.status_code)]
        schema = answer["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": doc["components"]})
        return response.json()

    return check


async def test_add_list_get_tools_test_remove(admin, documented, kernel):
    r = await admin.post("/api/mcp/servers", json={"name": "bad", "config": FAULTY,
                                                   "secret_env": {"FAKE_TOKEN": "tok-123"}})
    assert r.status_code == 201, r.text
    added = documented(r, "/api/mcp/servers", "post")
    assert added["config"]["env"] == {"FAKE_TOKEN": "${secret:mcp.bad.env.FAKE_TOKEN}"} and "tok-123" not in r.text
    listed = documented(await admin.get("/api/mcp/servers"), "/api/mcp/servers")
    assert [s["name"] for s in listed["data"]] == ["bad"] and listed["problem"] is None
    tools = documented(await admin.get("/api/mcp/servers/bad/tools"), "/api/mcp/servers/{name}/tools")
    assert tools["problem"] is None and "mcp__bad__echo" in {t["name"] for t in tools["data"]}
    one = documented(await admin.get("/api/mcp/servers/bad"), "/api/mcp/servers/{name}")
    assert one["status"]["state"] == "ready" and one["status"]["tools"] == len(tools["data"])
    resources = documented(await admin.get("/api/mcp/servers/bad/resources"), "/api/mcp/servers/{name}/resources")
    assert resources == {"data": [], "problem": None}  # it offers none
    report = documented(await admin.post("/api/mcp/servers/bad/test"), "/api/mcp/servers/{name}/test", "post")
    assert report["ok"] and report["server"]["name"] == "faulty"
    r = await admin.delete("/api/mcp/servers/bad")
    assert r.status_code == 200 and documented(r, "/api/mcp/servers/{name}", "delete")["name"] == "bad"
    assert kernel.secrets.get("mcp.bad.env.FAKE_TOKEN") is None
    assert (await admin.get("/api/mcp/servers/bad")).status_code == 404


async def test_a_real_server_s_prompts_and_a_broken_one_s_problem(admin, documented):
    await admin.post("/api/mcp/servers", json={"name": "time", "config": {"command": TIME}})
    prompts = documented(await admin.get("/api/mcp/servers/time/prompts"), "/api/mcp/servers/{name}/prompts")
    assert prompts["problem"] is None
    await admin.post("/api/mcp/servers", json={"name": "ghost", "config": {"command": "byenatos-no-such"}})
    r = await admin.get("/api/mcp/servers/ghost/tools")
    assert r.status_code == 200
    body = documented(r, "/api/mcp/servers/{name}/tools")
    assert body["data"] == [] and body["problem"]["kind"] == "command_not_found"
    report = (await admin.post("/api/mcp/servers/ghost/test", params={"timeout": 5})).json()
    assert report["ok"] is False and "was not found" in report["problem"]["message"]


@pytest.mark.parametrize("body, param", [
    ({"name": "a__b", "config": {"command": "x"}}, "name"),
    ({"name": "ok", "config": {"command": "x", "url": "http://127.0.0.1/mcp"}}, "config"),
    ({"name": "ok", "config": {"url": "ftp://example.com"}}, "config"),
    ({"name": "ok", "config": {"command": "x", "nonsense": 1}}, "config"),
    ({"name": "ok", "config": "uvx mcp-server-time"}, "config"),
    ({"name": "ok", "config": {"command": "x"}, "secret_env": {"A": ""}}, "secret_env"),
    ({"name": "ok", "config": {"command": "x"}, "extra": True}, "extra"),
])
async def test_bad_bodies_are_400s_naming_the_field(admin, body, param):
    r = await admin.post("/api/mcp/servers", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_errors(admin, gateway, kernel):
    await admin.post("/api/mcp/servers", json={"name": "one", "config": {"command": "x"}})
    r = await admin.post("/api/mcp/servers", json={"name": "one", "config": {"command": "y"}})
    assert r.status_code == 400 and "exists already" in r.text
    r = await admin.post("/api/mcp/servers", json={"name": "one", "config": {"command": "y"}, "replace": True})
    assert r.status_code == 201 and r.json()["config"]["command"] == "y"
    assert (await admin.post("/api/mcp/servers/one/test", params={"timeout": "soon"})).status_code == 400
    assert (await admin.get("/api/mcp/servers/no__such/tools")).status_code == 404
    _, token = kernel.apps.register("editor", ["chat"])
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"}) as app:
        assert (await app.get("/api/mcp/servers")).status_code == 403  # admin only


async def test_claude_desktop_servers_are_offered_then_imported(admin, documented, monkeypatch, tmp_path):
    user = tmp_path / "user"
    (user / ".config" / "Claude").mkdir(parents=True)
    (user / ".config" / "Claude" / "claude_desktop_config.json").write_text(json.dumps(
        {"mcpServers": {"Clock": {"command": TIME}, "gh": {"command": "gh-mcp", "env": {"TOKEN": "plain"}}}}))
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user / ".config"))
    offers = documented(await admin.get("/api/mcp/imports"), "/api/mcp/imports")
    assert [s["name"] for s in offers["data"][0]["servers"]] == ["clock", "gh"]
    assert (await admin.get("/api/mcp/servers")).json()["data"] == []  # offered, not imported
    r = await admin.post("/api/mcp/imports", json={"source": "claude", "names": ["Clock"]})
    done = documented(r, "/api/mcp/imports", "post")
    assert [i["name"] for i in done["imported"]] == ["clock"]
    assert [s["name"] for s in (await admin.get("/api/mcp/servers")).json()["data"]] == ["clock"]
    assert (await admin.post("/api/mcp/imports", json={"source": "/etc/passwd"})).status_code == 400
