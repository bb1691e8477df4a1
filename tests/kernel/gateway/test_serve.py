"""The gateway as `byenatos serve` runs it, driven by the official OpenAI SDK over loopback."""

from __future__ import annotations

import httpx
import openai
import pytest

from app.kernel.errors import ConfigError
from app.kernel.gateway.server import GatewayServer
from tests.fakes.upstream import Fault


@pytest.fixture
async def gateway(kernel_with_openai):
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(gateway):
    c = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def http(gateway):
    async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as c:
        yield c


async def test_models_lists_alias_and_registry(client):
    ids = [m.id async for m in client.models.list()]
    assert ids == ["default", "fake/gpt-fake-large", "fake/gpt-fake-mini"]


async def test_chat_with_the_sdk(client, openai_upstream):
    r = await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == openai_upstream.reply_text
    assert r.usage.completion_tokens > 0


async def test_stream_with_the_sdk(client, openai_upstream):
    stream = await client.chat.completions.create(
        model="fake/gpt-fake-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    text, finish = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == openai_upstream.reply_text
    assert finish == "stop"


async def test_unknown_model_is_404_listing_what_exists(client):
    with pytest.raises(openai.NotFoundError) as e:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "fake/gpt-fake-mini" in e.value.body["message"]
    assert e.value.body["param"] == "model"


@pytest.mark.parametrize("body,expected", [
    (b"{oops", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "empty"),
    (b'{"model": "default"}', "messages"),
    (b'{"model": "default", "messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role"),
    (b'{"model": "default", "messages": []}', "at least one message"),
])
async def test_bad_input_is_400_in_openai_format(http, body, expected):
    r = await http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert expected in err["message"]
    assert err["type"] == "invalid_request_error"


async def test_upstream_failure_maps_to_502(client, openai_upstream):
    openai_upstream.fault = Fault(kind="status", status=500, message="boom")
    with pytest.raises(openai.InternalServerError) as e:
        await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    assert "boom" in e.value.body["message"]


async def test_upstream_rate_limit_keeps_retry_after(http, openai_upstream):
    openai_upstream.fault = Fault(kind="status", status=429, headers={"Retry-After": "7"})
    r = await http.post("/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"


async def test_error_mid_stream_reaches_the_sdk_as_an_error(client, openai_upstream):
    openai_upstream.fault = Fault(kind="disconnect", after_chunks=2)
    stream = await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}],
                                                  stream=True)
    with pytest.raises(openai.APIError, match="connection dropped"):
        async for _ in stream:
            pass


async def test_unknown_route_is_json_404(http):
    r = await http.get("/v1/nothing-here")
    assert r.status_code == 404
    assert "error" in r.json()


async def test_health(http):
    r = await http.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_port_in_use_is_a_readable_error(gateway, kernel_with_openai):
    with pytest.raises(ConfigError, match="already in use"):
        await GatewayServer(kernel_with_openai, host="127.0.0.1", port=gateway.port).start()
