"""/api/approvals, /api/tools/permissions, /api/tools/audit and /api/agents/{pid}/undo through the
real gateway on loopback, an agent run by DBOS against a tool-using fake model over a socket."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jsonschema
import pytest

from app.kernel.agents.process import ProcessState
from app.kernel.gateway.server import GatewayServer
from app.kernel.tools.approvals import ApprovalRequested

WRITE = ("file_write", {"path": "log.txt", "content": "x\n", "mode": "append"})
WORKER = 'name = "worker"\ninstructions = "Do the task."\ntools = ["file_write", "file_read"]\n'


@pytest.fixture
async def gateway(kernel, agent_upstream):
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def admin(gateway, kernel):
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False, timeout=30,
                                 headers={"Authorization": f"Bearer {kernel.apps.admin_token()}"}) as c:
        yield c


@pytest.fixture
async def conforms(admin):
    components = (await admin.get("/openapi.json")).json()["components"]

    def check(name: str, data: Any) -> None:
        jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components}
                                        ).validate(data)

    return check


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()["error"]


async def spawn_waiting(admin, kernel) -> tuple[int, ApprovalRequested]:
    """An agent whose first tool call waits for the user; its pid and the request."""
    sub = kernel.events.subscribe(accepts=lambda e: isinstance(e, ApprovalRequested))
    r = await admin.post("/api/agents", json={"spec": WORKER, "task": "write"})
    assert r.status_code == 201, r.text
    try:
        return r.json()["pid"], await asyncio.wait_for(sub.queue.get(), 30)
    finally:
        sub.close()


async def test_a_pending_request_is_listed_answered_and_the_agent_goes_on(admin, kernel, agent_upstream, conforms):
    agent_upstream.plan = [[WRITE]]
    assert (await admin.get("/api/approvals")).json() == {"data": []}
    pid, event = await spawn_waiting(admin, kernel)
    listed = (await admin.get("/api/approvals")).json()
    conforms("ApprovalList", listed)
    [pending] = listed["data"]
    assert (pending["id"], pending["pid"], pending["tool"], pending["state"]) == (event.id, pid, "file_write", "pending")
    assert '"path":"log.txt"' in pending["arguments"]
    assert (await admin.get(f"/api/agents/{pid}")).json()["state"] == "waiting_approval"
    # the agent is live: its changes cannot be undone under it
    error_of(await admin.post(f"/api/agents/{pid}/undo"), 409)
    r = await admin.post(f"/api/approvals/{event.id}/answer", json={"answer": "once"})
    assert r.status_code == 200, r.text
    conforms("Approval", r.json())
    assert r.json()["state"] == "approved"
    done = await kernel.agents.wait(pid, timeout=30)
    assert done.state is ProcessState.DONE
    error_of(await admin.post(f"/api/approvals/{event.id}/answer", json={"answer": "deny"}), 409)
    past = (await admin.get("/api/approvals", params={"state": "all"})).json()["data"]
    assert [a["state"] for a in past] == ["approved"] and past[0]["arguments"] is None  # not kept after
    got = (await admin.get(f"/api/approvals/{event.id}")).json()
    assert got["id"] == event.id

    # what it did: the audit, and an undo of it
    audit = (await admin.get("/api/tools/audit", params={"pid": pid})).json()
    conforms("ToolAudit", audit)
    assert [(r["tool"], r["outcome"]) for r in audit["data"]] == [("file_write", "ok")]
    assert (await admin.get("/api/tools/audit", params={"outcome": "denied"})).json()["data"] == []
    plan = (await admin.get(f"/api/agents/{pid}/undo")).json()
    conforms("UndoPlan", plan)
    assert [e["kind"] for e in plan["data"]] == ["missing"]
    report = (await admin.post(f"/api/agents/{pid}/undo")).json()
    conforms("UndoReport", report)
    log = kernel.paths.data_dir / "agents" / "worker" / "log.txt"
    assert report["changes"] == 1 and report["deleted"] == [str(log)] and not log.exists()
    assert (await admin.post(f"/api/agents/{pid}/undo")).json()["changes"] == 0


async def test_answering_badly_is_a_4xx_in_the_apis_format(admin, kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]]
    error_of(await admin.post("/api/approvals/99/answer", json={"answer": "once"}), 404)
    error_of(await admin.post("/api/approvals/x/answer", json={"answer": "once"}), 404)
    error_of(await admin.get("/api/approvals/0"), 404)
    error_of(await admin.get("/api/approvals", params={"state": "maybe"}), 400)
    error_of(await admin.get("/api/approvals", params={"limit": "0"}), 400)
    _, event = await spawn_waiting(admin, kernel)
    url = f"/api/approvals/{event.id}/answer"
    assert error_of(await admin.post(url, json={"answer": "yes"}), 400)["param"] == "answer"
    assert error_of(await admin.post(url, json={"answer": "once", "also": 1}), 400)["param"] == "also"
    error_of(await admin.post(url, content=b"not json"), 400)
    assert (await admin.post(url, json={"answer": "deny"})).json()["state"] == "denied"


async def test_permission_rules_over_http(admin, conforms):
    r = await admin.put("/api/tools/permissions", json={"tool": "file_write", "decision": "allow",
                                                         "app": "agent-worker"})
    assert r.status_code == 200, r.text
    conforms("ToolRule", r.json())
    data = (await admin.get("/api/tools/permissions", params={"app": "agent-worker"})).json()
    conforms("ToolPermissions", data)
    decisions = {t["tool"]: t["decision"] for t in data["tools"]}
    assert decisions["file_write"] == "allow" and decisions["file_read"] == "allow"
    assert decisions["file_delete"] == "ask"  # the default for a write
    everyone = (await admin.get("/api/tools/permissions")).json()
    assert {t["tool"]: t["decision"] for t in everyone["tools"]}["file_write"] == "ask"
    await admin.put("/api/tools/permissions", json={"tool": "risk:write", "decision": "deny"})
    assert [(r["app"], r["tool"]) for r in (await admin.get("/api/tools/permissions")).json()["rules"]] == [
        ("*", "risk:write"), ("agent-worker", "file_write")]
    r = await admin.delete("/api/tools/permissions", params={"tool": "file_write", "app": "agent-worker"})
    assert r.status_code == 200 and r.json()["decision"] == "allow"
    error_of(await admin.delete("/api/tools/permissions", params={"tool": "file_write", "app": "agent-worker"}), 404)
    assert error_of(await admin.delete("/api/tools/permissions"), 400)["param"] == "tool"
    for body, param in (({"tool": "rm -rf /", "decision": "allow"}, "tool"),
                        ({"tool": "file_write", "decision": "maybe"}, "decision"),
                        ({"tool": "file_write", "decision": "allow", "app": "no spaces"}, "app"),
                        ({"decision": "allow"}, "tool"),
                        ({"tool": "x", "decision": "allow", "who": "me"}, "who")):
        assert error_of(await admin.put("/api/tools/permissions", json=body), 400)["param"] == param
    error_of(await admin.get("/api/tools/audit", params={"outcome": "fine"}), 400)
    error_of(await admin.get("/api/tools/audit", params={"limit": "many"}), 400)
    error_of(await admin.get("/api/agents/77/undo"), 404)
    error_of(await admin.post("/api/agents/abc/undo"), 404)


async def test_every_route_needs_the_admin_scope(gateway, kernel):
    _, token = kernel.apps.register("some-app", ["chat"])
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False,
                                 headers={"Authorization": f"Bearer {token}"}) as app:
        for method, path in (("GET", "/api/approvals"), ("POST", "/api/approvals/1/answer"),
                             ("GET", "/api/tools/permissions"), ("PUT", "/api/tools/permissions"),
                             ("DELETE", "/api/tools/permissions"), ("GET", "/api/tools/audit"),
                             ("POST", "/api/agents/1/undo")):
            assert (await app.request(method, path, json={})).status_code == 403, (method, path)


async def test_openapi_describes_every_route(admin):
    paths = (await admin.get("/openapi.json")).json()["paths"]
    ops = {f"{m.upper()} {p}" for p, o in paths.items()
           if p.startswith(("/api/approvals", "/api/tools/permissions", "/api/tools/audit")) or p.endswith("/undo")
           for m in o}
    assert ops == {"GET /api/approvals", "GET /api/approvals/{id}", "POST /api/approvals/{id}/answer",
                   "GET /api/tools/permissions", "PUT /api/tools/permissions", "DELETE /api/tools/permissions",
                   "GET /api/tools/audit", "GET /api/agents/{pid}/undo", "POST /api/agents/{pid}/undo"}
    assert "409" in paths["/api/approvals/{id}/answer"]["post"]["responses"]
