"""The gateway's pass-through lane on the desktop app's qasync loop: it is built from transport
callbacks, timers and a connect task, which the Qt-driven loop must run as asyncio does."""

from __future__ import annotations

import asyncio
import json

import httpx

from app.kernel.gateway.keys import LANE
from tests.fakes.upstream import Fault

CHAT = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}


async def test_the_lane_serves_concurrent_chat_and_streams_on_qasync(runtime_with_openai, openai_upstream):
    runtime = runtime_with_openai
    lane = runtime.gateway.app[LANE]
    _, token = runtime.kernel.apps.register("stress", ["chat"])
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=runtime.gateway_url, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as client:

        async def plain() -> str:
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        async def streamed() -> str:
            async with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
                lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
            assert r.status_code == 200 and lines[-1] == "data: [DONE]"
            return "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                           for line in lines[:-1])

        answers = await asyncio.gather(*(plain() if i % 2 else streamed() for i in range(200)))
        openai_upstream.fault = Fault(kind="status", status=503, times=1)  # handed over, retried
        answers.append(await plain())

    assert set(answers) == {openai_upstream.reply_text}
    assert lane.served >= 190 and lane.handed_over >= 1
    assert all(d.in_flight == 0 for d in runtime.kernel.router.deployments())
