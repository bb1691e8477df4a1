"""/api/agents through the real gateway on loopback, with a tool-using fake model over a socket:
every route, every error status, and the live event stream of one agent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jsonschema
import pytest

from app.kernel.agents.process import ProcessState
from app.kernel.gateway.server import GatewayServer

WRITE = ("file_write", {"path": "log.txt", "content": "x\n", "mode": "append"})
WORKER = 'name = "worker"\ninstructions = "Do the task."\ntools = ["file_write", "file_read"]\n'


@pytest.fixture
async def gateway(kernel, agent_upstream):
    """The gateway of a kernel whose default socket is the tool-using fake model."""
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    kernel.tool_invoker.permissions.set(None, "risk:write", "allow")  # as `byenatos tools allow risk:write`
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
    """conforms(name, data): `data` is what /openapi.json says schema `name` is."""
    components = (await admin.get("/openapi.json")).json()["components"]

    def check(name: str, data: Any) -> None:
        jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": components}
                                        ).validate(data)

    return check


async def spawn(admin: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await admin.post("/api/agents", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    """The error of a refused request, in the API's own (OpenAI-style) format."""
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


# -- spawn, get, list, logs ----------------------------------------------------------------------
async def test_a_shipped_agent_spawns_by_name_and_runs_to_its_end(admin, kernel, conforms):
    proc = await spawn(admin, agent="assistant", task="Say hello.", priority="background")
    conforms("AgentProcess", proc)
    assert (proc["name"], proc["kind"], proc["app"], proc["priority"]) == (
        "assistant", "kernel", "agent-assistant", "background")
    assert proc["task"] == "Say hello." and proc["quotas"]["steps"] == 30  # the agent file's limits
    assert proc["spec"]["tools"][0] == "memory_search"
    done = await kernel.agents.wait(proc["pid"], timeout=30)
    assert done.state is ProcessState.DONE

    r = await admin.get(f"/api/agents/{proc['pid']}")
    assert r.status_code == 200
    got = r.json()
    conforms("AgentProcess", got)
    assert got["state"] == "done" and got["result"] == "Final answer." and got["usage"]["calls"] == 1
    assert got["ended_at"] >= got["started_at"] >= got["created_at"]

    r = await admin.get("/api/agents", params={"state": "done"})
    conforms("AgentList", r.json())
    listed = r.json()["data"]
    assert [p["pid"] for p in listed] == [proc["pid"]]
    assert (await admin.get("/api/agents", params={"state": "running,suspended"})).json()["data"] == []
    assert [p["pid"] for p in (await admin.get("/api/agents")).json()["data"]] == [proc["pid"]]

    r = await admin.get(f"/api/agents/{proc['pid']}/logs")
    conforms("AgentLogs", r.json())
    entries = r.json()["data"]
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "state" and "llm" in kinds and kinds[-1] == "result"
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    later = (await admin.get(f"/api/agents/{proc['pid']}/logs", params={"after": 2, "limit": 1})).json()["data"]
    assert [e["seq"] for e in later] == [3]


async def test_an_agent_file_sent_as_text_runs_with_the_quotas_and_priority_asked_for(admin, kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]]
    proc = await spawn(admin, spec=WORKER + "[limits]\nsteps = 5\ntokens = 9000\n", task="log",
                       quotas={"steps": 8, "tokens": None, "tool_calls": 3}, priority="interactive")
    assert proc["name"] == "worker" and proc["app"] == "agent-worker"
    assert proc["quotas"] == {"steps": 8, "tool_calls": 3}  # 8 replaces 5; null removed the token limit
    assert proc["priority"] == "interactive"
    assert (await kernel.agents.wait(proc["pid"], timeout=30)).state is ProcessState.DONE
    assert (kernel.paths.data_dir / "agents" / "worker" / "log.txt").read_text() == "x\n"

    yaml_spec = "name: yaml-worker\ninstructions: Do the task.\ntools: []\n"
    proc = await spawn(admin, spec=yaml_spec, spec_format="yaml")
    assert proc["name"] == "yaml-worker"


async def test_bad_spawns_are_400s_that_say_what_is_wrong(admin, kernel, tmp_path):
    secret = tmp_path / "secret.toml"
    secret.write_text('name = "leak"\ninstructions = "the secret is 4711"\n')
    cases = [
        ({"agent": "nobody"}, "agent", "no shipped agent named 'nobody'; shipped agents: assistant, research-notes"),
        # a path is not a name: the daemon reads no file a caller names
        ({"agent": str(secret)}, "agent", "no shipped agent named"),
        ({"agent": "resources/agents/assistant.toml"}, "agent", "no shipped agent named"),
        ({}, "agent", "give either `agent`"),
        ({"agent": "assistant", "spec": WORKER}, "agent", "not both"),
        ({"agent": None, "spec": WORKER}, "agent", "not both"),
        ({"agent": 7}, "agent", "no shipped agent named a string"),
        ({"spec": 'name = "x"\ninstructions = '}, None, "spec: not valid TOML"),
        ({"spec": "name: [x\n", "spec_format": "yaml"}, None, "spec: not valid YAML"),
        ({"spec": WORKER, "spec_format": "json"}, "spec_format", "one of toml, yaml"),
        ({"agent": "assistant", "spec_format": "toml"}, "spec_format", "only with `spec`"),
        ({"spec": 'name = "Bad Name"\ninstructions = "x"\n'}, None, "spec: name: lower-case letters"),
        ({"spec": WORKER.replace("file_read", "rm_rf")}, None, "unknown tool 'rm_rf'"),
        ({"spec": WORKER + "[limits]\nsteps = 1e300\n"}, "spec: limits.steps", "at most"),
        ({"agent": "assistant", "quotas": {"steps": 0}}, "quotas.steps", "greater than 0"),
        ({"agent": "assistant", "quotas": {"cost": -1.5}}, "quotas.cost", "greater than 0"),
        ({"agent": "assistant", "quotas": {"steps": True}}, "quotas.steps", "a number"),
        ({"agent": "assistant", "quotas": {"minutes": 5}}, "quotas.minutes", "not a quota"),
        ({"agent": "assistant", "quotas": [1]}, "quotas", "an object of limits"),
        ({"agent": "assistant", "priority": "urgent"}, "priority", "one of interactive, normal, background"),
        ({"agent": "assistant", "task": 5}, "task", "a string"),
        ({"agent": "assistant", "parent": 1}, "parent", "not a field"),
    ]
    for body, param, words in cases:
        error = error_of(await admin.post("/api/agents", json=body), 400)
        assert words in error["message"], (body, error)
        assert "4711" not in error["message"]
        if param is not None:
            assert error["param"] == param, (body, error)
    error_of(await admin.post("/api/agents", content=b"{nope", headers={"content-type": "application/json"}), 400)
    assert kernel.agents.list() == []  # none of them spawned anything


async def test_bad_queries_are_400s_and_unknown_pids_404s(admin):
    assert "unknown state 'sleeping'" in error_of(await admin.get("/api/agents?state=running,sleeping"), 400)[
        "message"]
    error_of(await admin.get("/api/agents?limit=0"), 400)
    error_of(await admin.get("/api/agents?limit=lots"), 400)
    for pid in ("999", "0", "abc", "-1", str(2**70)):
        error = error_of(await admin.get(f"/api/agents/{pid}"), 404)
        assert "no agent with pid" in error["message"]
        error_of(await admin.post(f"/api/agents/{pid}/kill"), 404)
    for method, path, body in (
        ("PATCH", "", {"quotas": {"steps": 3}}), ("POST", "/suspend", None), ("POST", "/resume", None),
        ("POST", "/kill", None), ("POST", "/messages", {"content": "hi"}), ("GET", "/logs", None),
        ("GET", "/events", None),
    ):
        r = await admin.request(method, f"/api/agents/999{path}", json=body)
        assert "no agent with pid 999" in error_of(r, 404)["message"], (method, path)


async def test_agents_are_the_users_control_admin_only(gateway, kernel):
    _, token = kernel.apps.register("nosy-app", ["chat", "hinata:read", "hinata:write", "psp:read"])
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as anon:
        assert (await anon.get("/api/agents")).status_code == 401
        for method, path in (("GET", "/api/agents"), ("POST", "/api/agents"), ("GET", "/api/agents/1/events")):
            r = await anon.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                   json={"agent": "assistant"} if method == "POST" else None)
            assert error_of(r, 403)["code"] == "missing_scope", path
    assert kernel.agents.list() == []


# -- lifecycle -----------------------------------------------------------------------------------
async def test_suspend_resume_kill_and_the_illegal_transitions_are_409s(admin, kernel, agent_upstream):
    agent_upstream.plan = [[WRITE], [WRITE]]
    agent_upstream.gate = asyncio.Event()
    proc = await spawn(admin, spec=WORKER, task="work")
    pid = proc["pid"]
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)

    error = error_of(await admin.post(f"/api/agents/{pid}/resume"), 409)
    assert error["code"] == "illegal_transition" and "it is not suspended" in error["message"]
    r = await admin.post(f"/api/agents/{pid}/suspend")
    assert r.status_code == 200 and r.json()["state"] == "suspended"
    assert r.json()["reason"] == "suspended by the user"
    error = error_of(await admin.post(f"/api/agents/{pid}/suspend"), 409)
    assert error["message"] == f"cannot suspend agent {pid}: it is suspended"

    agent_upstream.gate.set()
    r = await admin.post(f"/api/agents/{pid}/resume")
    assert r.status_code == 200 and r.json()["state"] in ("ready", "running")
    assert (await kernel.agents.wait(pid, timeout=30)).state is ProcessState.DONE
    error = error_of(await admin.post(f"/api/agents/{pid}/kill"), 409)
    assert "already ended (done)" in error["message"]

    agent_upstream.gate = asyncio.Event()
    other = (await spawn(admin, spec=WORKER))["pid"]
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)
    r = await admin.post(f"/api/agents/{other}/kill")
    assert r.status_code == 200 and r.json()["state"] == "killed" and r.json()["ended_at"]
    for action in ("suspend", "resume", "kill"):
        assert "already ended (killed)" in error_of(await admin.post(f"/api/agents/{other}/{action}"), 409)["message"]
    error = error_of(await admin.post(f"/api/agents/{other}/messages", json={"content": "still there?"}), 409)
    assert error["code"] == "illegal_transition"


async def test_a_quota_reached_suspends_and_patch_raises_it(admin, kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]] * 3
    pid = (await spawn(admin, spec=WORKER, quotas={"steps": 2}))["pid"]
    stopped = await kernel.agents.wait(pid, timeout=30)
    assert stopped.state is ProcessState.SUSPENDED and stopped.reason == "quota reached: 2 of 2 steps"

    for body, words in (
        ({"quotas": {"steps": 0}}, "greater than 0"),
        ({"quotas": {"steps": -4}}, "greater than 0"),
        ({"quotas": {}}, "at least one limit"),
        ({"quotas": {"naps": 3}}, "not a quota"),
        ({}, "Field required"),
        ({"quotas": {"steps": 9}, "priority": "interactive"}, "not a field"),
    ):
        assert words in error_of(await admin.patch(f"/api/agents/{pid}", json=body), 400)["message"], body
    r = await admin.patch(f"/api/agents/{pid}", json={"quotas": {"steps": 10, "wall_s": 600}})
    assert r.status_code == 200 and r.json()["quotas"] == {"steps": 10, "wall_s": 600}
    assert r.json()["state"] == "suspended"  # raising a quota does not resume by itself
    assert (await admin.post(f"/api/agents/{pid}/resume")).status_code == 200
    done = await kernel.agents.wait(pid, timeout=30)
    assert done.state is ProcessState.DONE and done.usage.steps == 4


async def test_a_message_reaches_a_conversation_agent(admin, kernel, agent_upstream, conforms):
    pid = (await spawn(admin, spec=WORKER + "conversation = true\n", task="hello"))["pid"]
    await kernel.agents.wait(pid, timeout=30, until=(ProcessState.WAITING_INPUT,))
    for body, words in (({"content": "  "}, "non-empty"), ({"content": 3}, "non-empty"), ({}, "non-empty"),
                        ({"content": "x", "from": "me"}, "not a field")):
        assert words in error_of(await admin.post(f"/api/agents/{pid}/messages", json=body), 400)["message"]
    before = len(agent_upstream.requests)
    r = await admin.post(f"/api/agents/{pid}/messages", json={"content": "and now this"})
    assert r.status_code == 201 and r.json() == {"pid": pid, "seq": 1}
    conforms("AgentMessageSent", r.json())
    await asyncio.wait_for(agent_upstream.wait_requests(before + 1), 30)
    assert agent_upstream.chat_bodies[-1]["messages"][-1] == {"role": "user", "content": "and now this"}
    assert (await admin.post(f"/api/agents/{pid}/kill")).status_code == 200


# -- the live event stream -----------------------------------------------------------------------
async def read_events(response: httpx.Response):
    """(event, id, data) for each server-sent event, until the server ends the stream."""
    event, id_, data = "message", None, []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, id_, json.loads("\n".join(data))
            event, id_, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(": ")
            if field == "event":
                event = value
            elif field == "id":
                id_ = int(value)
            elif field == "data":
                data.append(value)


async def test_the_event_stream_sends_the_backlog_then_live_entries_and_ends_with_the_agent(
        admin, kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]]
    agent_upstream.gate = asyncio.Event()
    pid = (await spawn(admin, spec=WORKER, task="work"))["pid"]
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)  # held at its first model call
    backlog = [e["seq"] for e in kernel.agents.logs(pid)]
    assert backlog  # spawned, running

    received: list[tuple[str, int | None, dict[str, Any]]] = []
    async with asyncio.timeout(30), admin.stream("GET", f"/api/agents/{pid}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = read_events(r)
        async for item in events:
            received.append(item)
            if item[0] == "log" and item[1] == backlog[-1]:
                break  # the whole backlog is in: everything from here on happens after we connected
        agent_upstream.gate.set()
        async for item in events:  # ends when the server closes the stream
            received.append(item)

    names = [name for name, _, _ in received]
    assert names[0] == "agent" and received[0][2]["pid"] == pid
    assert received[0][2]["state"] in ("running", "waiting_model")
    assert names[-1] == "end" and received[-1][2]["state"] == "done"
    assert received[-1][2]["result"].startswith("Final answer.")
    logs = [(id_, data) for name, id_, data in received if name == "log"]
    assert [id_ for id_, _ in logs] == list(range(1, len(logs) + 1))  # each entry once, in order
    assert [data["seq"] for _, data in logs] == [id_ for id_, _ in logs]
    live = [data["kind"] for id_, data in logs if id_ > backlog[-1]]
    assert "llm" in live and "tool" in live and live[-1] == "result"
    states = [data["state"] for name, _, data in received if name == "state"]
    assert states[-1] == "done" and "waiting_tool" in states
    assert len(logs) == len(kernel.agents.logs(pid))

    # Reconnecting after the last entry seen: only what came after it, then the end at once.
    async with asyncio.timeout(10), admin.stream("GET", f"/api/agents/{pid}/events",
                                                 headers={"Last-Event-ID": str(logs[-3][0])}) as r:
        again = [item async for item in read_events(r)]
    assert [name for name, _, _ in again] == ["agent", "log", "log", "end"]
    assert [id_ for _, id_, _ in again[1:3]] == [logs[-2][0], logs[-1][0]]
    async with asyncio.timeout(10), admin.stream("GET", f"/api/agents/{pid}/events?after={logs[-1][0]}") as r:
        assert [name for name, _, _ in [item async for item in read_events(r)]] == ["agent", "end"]


async def test_the_event_stream_of_a_killed_agent_ends_and_bad_cursors_are_400s(admin, kernel, agent_upstream):
    agent_upstream.gate = asyncio.Event()
    pid = (await spawn(admin, spec=WORKER))["pid"]
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)
    error_of(await admin.get(f"/api/agents/{pid}/events?after=-1"), 400)
    error_of(await admin.get(f"/api/agents/{pid}/events", headers={"Last-Event-ID": "seven"}), 400)
    received = []
    async with asyncio.timeout(30), admin.stream("GET", f"/api/agents/{pid}/events") as r:
        events = read_events(r)
        received.append(await anext(events))  # the agent as it is: connected
        await kernel.agents.kill(pid)
        received += [item async for item in events]
    assert received[0][0] == "agent" and received[-1][0] == "end" and received[-1][2]["state"] == "killed"
    assert any(name == "state" and data["state"] == "killed" for name, _, data in received)


async def test_openapi_describes_every_agents_route(admin):
    doc = (await admin.get("/openapi.json")).json()
    ops = {f"{m.upper()} {p}" for p, o in doc["paths"].items() if p.startswith("/api/agents") for m in o}
    assert ops == {
        "POST /api/agents", "GET /api/agents", "GET /api/agents/{pid}", "PATCH /api/agents/{pid}",
        "POST /api/agents/{pid}/suspend", "POST /api/agents/{pid}/resume", "POST /api/agents/{pid}/kill",
        "POST /api/agents/{pid}/messages", "GET /api/agents/{pid}/logs", "GET /api/agents/{pid}/events",
        "GET /api/agents/{pid}/undo", "POST /api/agents/{pid}/undo",  # approvals_routes (file changes)
    }
    spawn_op = doc["paths"]["/api/agents"]["post"]
    assert "201" in spawn_op["responses"] and "`admin`" in spawn_op["description"]
    assert "409" in doc["paths"]["/api/agents/{pid}/resume"]["post"]["responses"]
