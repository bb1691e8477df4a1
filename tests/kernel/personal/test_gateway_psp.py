"""Through the real gateway: app tokens, scopes, injection into chat, the PSP version header."""

from __future__ import annotations

import httpx
import openai
import pytest

from app.kernel.gateway.server import GatewayServer

CANARY = "okapi-vault-5521"


@pytest.fixture
async def gateway(kernel_with_openai):
    await kernel_with_openai.personal.ready()
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


def _client(gateway, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=gateway.url, trust_env=False, headers=headers)


async def test_an_opted_in_app_gets_its_psp_and_the_version_header(
    gateway, kernel_with_openai, openai_upstream
):
    kernel = kernel_with_openai
    _, notes_token = kernel.apps.register("notes", ["hinata:write"])
    _, chat_token = kernel.apps.register("chatter", ["chat", "hinata:read", "hinata:write", "psp:read"])
    async with (
        _client(gateway, notes_token) as notes,
        _client(gateway, chat_token) as chat,
        _client(gateway, None) as anon,
    ):
        r = await notes.post(
            "/api/hinata",
            json=[
                {
                    "id": "g1",
                    "highlight": "Our cat Pixel needs her rabies booster in June",
                    "access": "shared",
                },
                {"id": "g2", "highlight": f"vet portal password {CANARY} for Pixel", "access": "private"},
            ],
        )
        assert r.status_code == 201, r.text
        assert (await anon.post("/api/hinata", json={"highlight": "x"})).status_code == 401
        assert (await notes.get("/api/psp/preview")).status_code == 403  # no psp:read scope

        sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=chat_token, max_retries=0)
        messages = [
            {"role": "system", "content": "You are a vet assistant."},
            {"role": "user", "content": "When does Pixel need her next vaccine?"},
        ]
        raw = await sdk.chat.completions.with_raw_response.create(
            model="fake/gpt-fake-mini", messages=messages
        )
        assert raw.headers.get("X-ByenatOS-PSP-Version") is None  # not opted in yet
        assert (await chat.put("/api/psp/apps/chatter", json={"inject": True})).status_code == 200
        raw = await sdk.chat.completions.with_raw_response.create(
            model="fake/gpt-fake-mini", messages=messages
        )
        version = raw.headers.get("X-ByenatOS-PSP-Version")
        assert version and version.startswith("psp-")
        sent = openai_upstream.requests[-1].body["messages"]
        assert sent[0]["role"] == "system"
        assert sent[0]["content"].startswith("You are a vet assistant.\n\n# Personal System Prompt")
        assert "rabies booster" in sent[0]["content"] and CANARY not in sent[0]["content"]
        assert sent[1:] == messages[1:]
        await sdk.close()

        preview = (
            await chat.get(
                "/api/psp/preview",
                params={"q": "When does Pixel need her next vaccine?", "model": "fake/gpt-fake-mini"},
            )
        ).json()
        assert "rabies booster" in preview["text"] and CANARY not in preview["text"]
        assert (await chat.get("/api/hinata/g2")).status_code == 404
        assert (await chat.post("/api/psp/pause")).status_code == 403  # the user's control
    admin_token = kernel.apps.admin_token()
    async with _client(gateway, admin_token) as admin:
        assert (await admin.post("/api/psp/pause")).json() == {"paused": True}
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=chat_token, max_retries=0)
    raw = await sdk.chat.completions.with_raw_response.create(model="fake/gpt-fake-mini", messages=messages)
    assert raw.headers.get("X-ByenatOS-PSP-Version") is None
    assert openai_upstream.requests[-1].body["messages"] == messages
    await sdk.close()
