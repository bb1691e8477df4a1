"""Fixtures for gateway tests: a running gateway on a random loopback port, tokens, SDK clients."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from app.kernel.gateway.server import GatewayServer


@pytest.fixture(params=[True, False], ids=["lane", "no-lane"])
async def gateway(request, kernel_with_openai):
    """A started gateway; every test using it runs with the pass-through lane on and off, so
    the two paths stay equivalent."""
    kernel_with_openai.settings.gateway.fast_lane = request.param
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def admin_token(kernel_with_openai) -> str:
    return kernel_with_openai.apps.admin_token()


@pytest.fixture
def app_token(kernel_with_openai) -> str:
    """A token of app `test-app` with the `chat` scope only."""
    _, token = kernel_with_openai.apps.register("test-app", ["chat"])
    return token


@pytest.fixture
async def client(gateway, app_token):
    c = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=app_token, max_retries=0)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def claude(gateway, app_token):
    c = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=app_token, max_retries=0)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def http(gateway, app_token):
    """A plain HTTP client carrying the `chat` app's token."""
    async with httpx.AsyncClient(
        base_url=gateway.url, trust_env=False, headers={"Authorization": f"Bearer {app_token}"}
    ) as c:
        yield c


@pytest.fixture
async def admin(gateway, admin_token):
    """A plain HTTP client carrying the user's admin token."""
    async with httpx.AsyncClient(
        base_url=gateway.url, trust_env=False, headers={"Authorization": f"Bearer {admin_token}"}
    ) as c:
        yield c


@pytest.fixture
async def anon(gateway):
    """A plain HTTP client without a token."""
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as c:
        yield c
