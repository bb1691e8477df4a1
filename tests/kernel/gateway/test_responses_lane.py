"""/v1/responses in the pass-through lane (gateway.responses_lane): served there, stored first."""

from __future__ import annotations

import json

import httpx
import pytest

from app.kernel.gateway.keys import LANE
from app.kernel.gateway.server import GatewayServer

PATH = "/v1/responses"


@pytest.fixture
async def gateway(kernel_with_openai):
    """The gateway with its lane on, whatever the suite-wide parameter says."""
    kernel_with_openai.settings.gateway.fast_lane = True
    server = await GatewayServer(kernel_with_openai, host="127.0.0.1", port=0).start()
    try:
        # The Responses routes load with the first request under /v1/responses (a lazy group);
        # the lane serves Responses from then on.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as c:
            await c.get(f"{PATH}/resp_none")
        yield server
    finally:
        await server.stop()


async def test_whole_and_streamed_responses_are_served_in_the_lane_and_stored(http, gateway, openai_upstream):
    lane = gateway.app[LANE]
    openai_upstream.reply_text = "Hello from the lane."
    r = await http.post(PATH, json={"model": "default", "input": "Say hello.", "max_output_tokens": 16})
    first = r.json()
    assert r.status_code == 200 and first["status"] == "completed"
    assert first["output"][0]["content"][0]["text"] == "Hello from the lane."
    s = await http.post(PATH, json={"model": "default", "input": "Again.", "previous_response_id": first["id"],
                                    "stream": True})
    events = [json.loads(line[6:]) for line in s.text.splitlines() if line.startswith("data: ")]
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert (lane.served, lane.handed_over) == (2, 0)
    # The chain went to the upstream whole; both are stored (the stream's before response.completed).
    assert [m["role"] for m in openai_upstream.requests[-1].body["messages"]] == ["user", "assistant", "user"]
    got = (await http.get(f"{PATH}/{events[-1]['response']['id']}")).json()
    assert got["previous_response_id"] == first["id"] and got["status"] == "completed"


async def test_unstored_response_is_served_and_not_kept(http, gateway):
    r = (await http.post(PATH, json={"model": "default", "input": "hi", "store": False})).json()
    assert r["store"] is False and gateway.app[LANE].served == 1
    assert (await http.get(f"{PATH}/{r['id']}")).status_code == 404


async def test_refusals_are_left_to_the_general_path(http, gateway):
    r = await http.post(PATH, json={"model": "default", "input": [{"type": "nope"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input[0].type"
    assert gateway.app[LANE].served == 0
