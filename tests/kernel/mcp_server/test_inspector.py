"""The MCP Inspector's CLI (`@modelcontextprotocol/inspector`, pinned in tests/fakes/npm_mcp)
against ByenatOS's MCP server: over streamable HTTP on a real gateway, and over stdio with the
real `byenatos mcp serve`. Skipped, saying why, where node or the Inspector is not installed
(scripts/node_deps.sh installs both)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

NPM_DIR = Path(__file__).resolve().parents[2] / "fakes" / "npm_mcp"
INSPECTOR = NPM_DIR / "node_modules" / ".bin" / "mcp-inspector"
BYENATOS = str(Path(sys.executable).with_name("byenatos"))

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (scripts/node_deps.sh)"),
    pytest.mark.skipif(not INSPECTOR.exists(), reason="the MCP Inspector is not installed: "
                       "cd tests/fakes/npm_mcp && npm ci"),
]


async def inspector(*args: str) -> tuple[int, dict | None, str]:
    proc = await asyncio.create_subprocess_exec(
        str(INSPECTOR), "--cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=NPM_DIR)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    try:
        parsed = json.loads(out)
    except ValueError:
        parsed = None
    return proc.returncode, parsed, err.decode() + out.decode()


async def test_the_inspector_lists_and_calls_over_http_with_an_app_token(gateway, token):
    url = f"{gateway.url}/mcp"
    reader = token("chat", "hinata:read", "hinata:write")
    auth = f"Authorization: Bearer {reader}"
    code, listed, text = await inspector(url, "--transport", "http", "--header", auth, "--method", "tools/list")
    assert code == 0, text
    assert [t["name"] for t in listed["tools"]] == ["memory_search", "memory_add", "socket_show"]
    code, added, text = await inspector(url, "--transport", "http", "--header", auth, "--method", "tools/call",
                                        "--tool-name", "memory_add", "--tool-arg", "highlight=seen by the inspector")
    assert code == 0 and added["isError"] is False, text
    assert added["structuredContent"]["status"] == "created"
    # a tool the token may not call is not listed: the Inspector refuses it before asking
    code, _, text = await inspector(url, "--transport", "http", "--header", auth, "--method", "tools/call",
                                    "--tool-name", "socket_swap", "--tool-arg", "model=x")
    assert code != 0 and "socket_swap" in text
    # a resource it may not read is the server's JSON-RPC error, naming the scope
    code, _, text = await inspector(url, "--transport", "http", "--header", auth, "--method", "resources/read",
                                    "--uri", "byenatos://psp")
    assert code != 0 and "lacks the 'psp:read' scope for the resource byenatos://psp" in text
    # no token: the gateway's 401, which the Inspector meets by asking for OAuth it cannot run here
    code, _, text = await inspector(url, "--transport", "http", "--method", "tools/list", "--stored-auth-only")
    assert code != 0 and ("401" in text or "auth" in text.lower())


async def test_the_inspector_reads_resources_over_stdio(home):
    env = ["-e", f"BYENATOS_HOME={home}", "-e", "BYENATOS_SECRETS=file", "-e", "LITELLM_LOCAL_MODEL_COST_MAP=True"]
    code, listed, text = await inspector(*env, BYENATOS, "mcp", "serve", "--method", "resources/list")
    assert code == 0, text
    assert [r["uri"] for r in listed["resources"]] == ["byenatos://psp", "byenatos://records/latest"]
    code, read, text = await inspector(*env, BYENATOS, "mcp", "serve", "--method", "resources/read",
                                       "--uri", "byenatos://records/latest")
    assert code == 0, text
    assert json.loads(read["contents"][0]["text"]) == {"records": [], "total": 0}
