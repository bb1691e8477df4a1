"""The OpenAI Agents SDK running an agent with a function tool through the gateway's Responses API.

The model behind the socket is the scripted fake (tests/fakes/agent_upstream.py): it asks for
the tool on the first round and answers with what the tool returned on the next, so the
agent's loop (model → tool → model) crosses the gateway twice per run, as it would with a
real model.
"""

from __future__ import annotations

import openai
import pytest
from agents import (
    Agent,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)

from app.kernel.gateway.server import GatewayServer

MODEL = "default"  # the socket's alias: the SDK reads a "/" in a model name as a provider prefix
calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"


@pytest.fixture
async def agents_client(kernel, agent_upstream):
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    _, token = kernel.apps.register("agents-app", ["chat"])
    server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0)
    set_tracing_disabled(True)
    set_default_openai_api("responses")
    set_default_openai_client(client, use_for_tracing=False)
    calls.clear()
    try:
        yield client
    finally:
        await client.close()
        await server.stop()


@pytest.mark.parametrize("chained", [False, True], ids=["history-sent", "previous-response-id"])
async def test_an_agent_with_a_function_tool_runs_through_the_gateway(agents_client, agent_upstream, chained):
    agent_upstream.plan = [[("get_weather", {"city": "Oslo"})]]
    agent = Agent(name="weather", instructions="Answer with the tool.", model=MODEL, tools=[get_weather])
    result = await Runner.run(agent, "What is the weather in Oslo?", auto_previous_response_id=chained)
    assert calls == ["Oslo"]
    assert result.final_output == "Final answer. Last tool said: sunny in Oslo"
    first, second = agent_upstream.chat_bodies[-2:]
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert first["messages"][0] == {"role": "system", "content": "Answer with the tool."}
    # the second model call carries the call and its output, whichever way the history travelled
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny in Oslo"}
    if chained:
        assert result.last_response_id is not None
        stored = await agents_client.responses.retrieve(result.last_response_id)
        assert stored.previous_response_id is not None and stored.output_text == result.final_output


async def test_a_streamed_agent_run(agents_client, agent_upstream):
    agent_upstream.plan = []  # streams go to the plain fake: it answers with its reply text
    agent = Agent(name="streamer", instructions="Be brief.", model=MODEL)
    run = Runner.run_streamed(agent, "Say hello.")
    kinds = {event.type async for event in run.stream_events()}
    assert "raw_response_event" in kinds
    assert run.final_output == agent_upstream.reply_text
