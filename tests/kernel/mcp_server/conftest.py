"""A real gateway on loopback with the tool-using fake model in its socket, and official `mcp`
SDK clients over streamable HTTP carrying one app token each."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from app.kernel.gateway.server import GatewayServer


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
def token(kernel):
    """token(*scopes) → a new app's token with those scopes (no scopes: the admin token)."""
    made = iter(range(1000))

    def make(*scopes: str) -> str:
        if not scopes:
            return kernel.apps.admin_token()
        _, t = kernel.apps.register(f"mcp-app-{next(made)}", list(scopes))
        return t

    return make


@pytest.fixture
def connect(gateway):
    """`async with connect(token) as client`: an SDK client over /mcp (the handshake era)."""

    @contextlib.asynccontextmanager
    async def open_client(token: str, **kwargs) -> AsyncIterator[object]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        async with (httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, trust_env=False,
                                       timeout=httpx2.Timeout(30, read=60)) as http,
                    Client(streamable_http_client(f"{gateway.url}/mcp", http_client=http),
                           mode=kwargs.pop("mode", "legacy"), cache=None, **kwargs) as client):
            yield client

    return open_client


@pytest.fixture
def activity(gateway):
    """The MCP server's record of the tool calls in flight (after the first /mcp request)."""

    def get():
        return gateway.app["mcp_http"].server.activity

    return get
