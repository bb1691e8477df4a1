"""/mcp answers every refusal as a JSON-RPC error in JSON, even those the SDK words in plain text."""

from __future__ import annotations

import httpx

from app.kernel.gateway.server import GatewayServer


async def test_a_wrong_content_type_is_a_jsonrpc_error_in_json(kernel):
    server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
    try:
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{server.url}/mcp", content=b"{}",
                                  headers={"Authorization": f"Bearer {kernel.apps.admin_token()}",
                                           "Content-Type": "application/octet-stream",
                                           "Accept": "application/json, text/event-stream"})
    finally:
        await server.stop()
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32600 and "Content-Type" in body["error"]["message"]
