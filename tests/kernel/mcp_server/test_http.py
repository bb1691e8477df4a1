"""ByenatOS's MCP server on the gateway's /mcp, through the official `mcp` SDK client over
streamable HTTP: the handshake, every tool and resource, scopes as JSON-RPC errors naming the
scope, pagination, ping, cancellation and progress, sessions owned by their app."""

from __future__ import annotations

import asyncio
import json
import warnings

import httpx
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from app.kernel.mcp_server import MISSING_SCOPE

ALL_TOOLS = ["memory_search", "memory_add", "psp_preview", "socket_show", "socket_swap", "agents_spawn",
             "agents_status"]
READER = ("chat", "hinata:read", "hinata:write", "psp:read")


async def ping(client) -> None:
    """ping, which the 2025 protocol has (the SDK warns that the 2026 one dropped it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        assert (await client.send_ping()) is not None


def data(result) -> dict:
    assert not result.is_error, result.content
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def all_tools(client) -> tuple[list[str], int]:
    names, pages, cursor = [], 0, None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [t.name for t in page.tools]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return names, pages


# -- the handshake and the lists --------------------------------------------------------------------
async def test_initialize_negotiates_the_protocol_and_declares_tools_and_resources(connect, token):
    async with connect(token()) as client:
        assert client.protocol_version == "2025-11-25"
        assert client.server_info.name == "byenatos" and client.server_info.version
        caps = client.server_capabilities
        assert caps.tools is not None and caps.resources is not None and caps.prompts is None
        assert "memory_search" in client.instructions
        await ping(client)


async def test_tools_are_paginated_and_only_those_the_token_may_call_are_listed(connect, token, monkeypatch):
    monkeypatch.setattr("app.kernel.mcp_server.server.PAGE_SIZE", 3)
    async with connect(token()) as admin:
        names, pages = await all_tools(admin)
        assert names == ALL_TOOLS and pages == 3  # 3 + 3 + 1
        listed = (await admin.list_tools()).tools[0]
        assert listed.input_schema["required"] == ["query"] and listed.annotations.read_only_hint is True
    async with connect(token("chat")) as chat:
        assert await all_tools(chat) == (["socket_show"], 1)
    async with connect(token(*READER)) as reader:
        assert (await all_tools(reader))[0] == ["memory_search", "memory_add", "psp_preview", "socket_show"]


async def test_a_cursor_the_server_did_not_make_is_invalid_params(connect, token):
    async with connect(token()) as client:
        with pytest.raises(MCPError) as e:
            await client.list_tools(cursor="not-ours")
        assert e.value.code == -32602 and "cursor" in e.value.message


# -- the tools ----------------------------------------------------------------------------------------
async def test_memory_add_then_memory_search_finds_it_and_another_app_does_not(connect, token, kernel):
    async with connect(token(*READER)) as alice, connect(token(*READER)) as bob:
        added = data(await alice.call_tool("memory_add", {"highlight": "the vault code is 4711",
                                                         "tag": ["secrets"]}))
        assert added["status"] == "created"
        await kernel.personal.wait_vectors()
        found = data(await alice.call_tool("memory_search", {"query": "vault code", "k": 3}))["records"]
        assert [r["id"] for r in found] == [added["id"]] and found[0]["tag"] == ["secrets"]
        assert found[0]["access"] == "private"
        # bob may read shared records, not alice's private one
        assert data(await bob.call_tool("memory_search", {"query": "vault code"}))["records"] == []


async def test_psp_preview_and_socket_show(connect, token):
    async with connect(token(*READER)) as client:
        psp = data(await client.call_tool("psp_preview", {"query": "anything", "budget": 500}))
        assert psp["budget"] == 500 and psp["app"].startswith("mcp-app-") and "text" in psp
        socket = data(await client.call_tool("socket_show", {}))
        assert socket["aliases"][0]["alias"] == "default"


async def test_socket_swap_needs_admin_and_swaps_with_it(connect, token, kernel):
    async with connect(token(*READER)) as app:
        with pytest.raises(MCPError) as e:
            await app.call_tool("socket_swap", {"model": "fake/gpt-fake-large"})
        assert e.value.code == MISSING_SCOPE and "'admin' scope" in e.value.message
        assert e.value.data["scope"] == "admin"
    async with connect(token()) as admin:
        swapped = data(await admin.call_tool("socket_swap", {"model": "fake/gpt-fake-large", "strategy": "immediate"}))
        assert swapped["alias"] == "default"
    assert kernel.socket_state()["aliases"][0]["model"] == "fake/gpt-fake-large"


async def test_a_call_without_the_scope_is_a_json_rpc_error_naming_it(connect, token):
    async with connect(token("chat")) as client:
        for tool, scope in (("memory_search", "hinata:read"), ("memory_add", "hinata:write"),
                            ("psp_preview", "psp:read"), ("agents_spawn", "admin"), ("agents_status", "admin")):
            with pytest.raises(MCPError) as e:
                await client.call_tool(tool, {"query": "x", "highlight": "x", "agent": "assistant"})
            assert e.value.code == MISSING_SCOPE, tool
            assert f"lacks the {scope!r} scope for the tool {tool}" in e.value.message
            assert e.value.data == {"scope": scope, "app": e.value.data["app"], "for": f"the tool {tool}"}
        with pytest.raises(MCPError) as e:
            await client.read_resource("byenatos://psp")
        assert e.value.code == MISSING_SCOPE and "'psp:read'" in e.value.message


async def test_bad_arguments_are_a_tool_error_naming_the_field_and_an_unknown_tool_invalid_params(connect, token):
    async with connect(token()) as client:
        cases = (("memory_search", {}, "argument 'query': required"),
                 ("memory_search", {"query": "x", "k": 0}, "argument k: 0 is less than the minimum of 1"),
                 ("memory_add", {"highlight": "x", "access": "everyone"}, "argument access:"),
                 ("socket_show", {"alias": "x"}, "Additional properties are not allowed ('alias'"),
                 ("agents_spawn", {"agent": "/etc/passwd"}, "agent: no shipped agent named '/etc/passwd'"),
                 ("agents_spawn", {"agent": "assistant", "quotas": {"steps": 0}}, "quotas.steps: a number greater"),
                 ("agents_status", {"pid": 999999}, "999999"),
                 ("socket_swap", {"model": "no/such-model"}, "no/such-model"))
        for tool, args, words in cases:
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, args)
            assert words in result.content[0].text, (tool, result.content[0].text)
        with pytest.raises(MCPError) as e:
            await client.call_tool("rm_rf", {})
        assert e.value.code == -32602 and "unknown tool 'rm_rf'" in e.value.message


# -- agents: spawn, status, progress, cancellation ----------------------------------------------------
async def test_agents_spawn_then_status_waits_reporting_progress(connect, token, agent_upstream, activity):
    agent_upstream.gate = asyncio.Event()
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async with connect(token()) as client:
        proc = data(await client.call_tool("agents_spawn", {"agent": "assistant", "task": "Say hi."}))
        assert proc["name"] == "assistant" and proc["state"] in ("ready", "running", "waiting_model")
        waiting = asyncio.create_task(client.call_tool(
            "agents_status", {"pid": proc["pid"], "wait_s": 60}, progress_callback=on_progress))
        await agent_upstream.wait_waiting(1)
        # the wait has begun (it subscribes to the agent's log before it first yields)
        await activity().wait_for(lambda a: "agents_status" in a.in_flight.values())
        agent_upstream.gate.set()
        done = data(await waiting)
        assert done["state"] == "done" and done["result"] and done["log"]
        assert progress and all(total == 30 for _, total, _ in progress)  # the assistant's step quota
        assert [p for p, _, _ in progress] == sorted(p for p, _, _ in progress)
        listed = data(await client.call_tool("agents_status", {}))["agents"]
        assert [a["pid"] for a in listed] == [proc["pid"]]


async def test_a_cancelled_call_stops_on_the_server_and_the_session_goes_on(connect, token, agent_upstream,
                                                                           activity):
    agent_upstream.gate = asyncio.Event()
    async with connect(token()) as client:
        proc = data(await client.call_tool("agents_spawn", {"agent": "assistant", "task": "Wait."}))
        await agent_upstream.wait_waiting(1)
        call = asyncio.create_task(client.call_tool("agents_status", {"pid": proc["pid"], "wait_s": 600}))
        await activity().wait_for(lambda a: "agents_status" in a.in_flight.values())
        call.cancel()
        await activity().wait_for(lambda a: not a.in_flight)
        assert activity().finished[-1] == ("agents_status", "cancelled")
        with pytest.raises(asyncio.CancelledError):
            await call
        await ping(client)
        assert data(await client.call_tool("agents_status", {"pid": proc["pid"]}))["state"] == "waiting_model"
        agent_upstream.gate.set()


# -- resources ------------------------------------------------------------------------------------------
async def test_resources_list_the_psp_the_latest_and_each_record_page_by_page(connect, token, monkeypatch):
    monkeypatch.setattr("app.kernel.mcp_server.server.PAGE_SIZE", 2)
    async with connect(token(*READER)) as client:
        ids = [data(await client.call_tool("memory_add", {"highlight": f"note {i}"}))["id"] for i in range(3)]
        uris, cursor, pages = [], None, 0
        while True:
            page = await client.list_resources(cursor=cursor)
            uris += [str(r.uri) for r in page.resources]
            pages += 1
            if (cursor := page.next_cursor) is None:
                break
        assert pages == 3 and uris[:2] == ["byenatos://psp", "byenatos://records/latest"]
        assert sorted(uris[2:]) == sorted(f"byenatos://records/{i.replace(':', '%3A')}" for i in ids)
        latest = json.loads((await client.read_resource("byenatos://records/latest")).contents[0].text)
        assert latest["total"] == 3 and {r["highlight"] for r in latest["records"]} == {"note 0", "note 1", "note 2"}
        one = (await client.read_resource(uris[2])).contents[0]
        assert one.mime_type == "application/json" and json.loads(one.text)["id"] in ids
        psp = (await client.read_resource("byenatos://psp")).contents[0]
        assert psp.mime_type == "text/markdown"
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["byenatos://records/{id}"]
        for uri in ("byenatos://nothing", "byenatos://records/no-such-record"):
            with pytest.raises(MCPError) as e:
                await client.read_resource(uri)
            assert e.value.code == -32002 and uri in e.value.message
    async with connect(token("chat")) as chat:
        assert (await chat.list_resources()).resources == []


# -- the HTTP side: auth, session ownership, the 2026 era -----------------------------------------------
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_no_token_is_401_and_a_session_answers_only_the_app_that_opened_it(gateway, token):
    alice, bob = token("chat"), token("chat")
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as http:
        r = await http.post("/mcp", json=INIT, headers=ACCEPT)
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_token"
        r = await http.post("/mcp", json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {alice}"})
        assert r.status_code == 200 and "text/event-stream" in r.headers["content-type"]
        session = r.headers["mcp-session-id"]
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        mine = {**ACCEPT, "Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}
        r = await http.post("/mcp", json=ping, headers={**mine, "Authorization": f"Bearer {bob}"})
        assert r.status_code == 404  # as if the session did not exist
        r = await http.post("/mcp", json=ping, headers={**mine, "Authorization": f"Bearer {alice}"})
        assert r.status_code == 200 and '"result":{}' in r.text.replace(" ", "")
        r = await http.delete("/mcp", headers={**mine, "Authorization": f"Bearer {alice}"})
        assert r.status_code == 200


async def test_a_2026_client_discovers_and_calls_without_a_handshake(connect, token):
    async with connect(token(*READER), mode="auto") as client:
        assert client.protocol_version not in ("2025-11-25", "2025-06-18")
        assert data(await client.call_tool("socket_show", {}))["aliases"]
        with pytest.raises(MCPError) as e:
            await client.call_tool("agents_status", {})
        assert e.value.code == MISSING_SCOPE and "'admin'" in e.value.message
