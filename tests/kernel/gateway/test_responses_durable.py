"""Stored responses survive `byenatos serve` being killed with SIGKILL, and a chain continues after
the restart on whatever model the socket then holds."""

from __future__ import annotations

import asyncio
import signal

import openai
import pytest

from app.kernel.kernel import Kernel
from tests.cli.test_daemon_discovery import start_daemon, stop_daemon


async def prepare_home(openai_upstream) -> tuple[str, str]:
    """The provider and default model in the home; an app's token and another app's."""
    kernel = await Kernel().start()
    try:
        await kernel.add_provider("fake", "openai", base_url=openai_upstream.api_base)
        await kernel.refresh_provider("fake")
        await kernel.set_default_model("fake/gpt-fake-mini")
        return kernel.apps.register("codex", ["chat"])[1], kernel.apps.register("other", ["chat"])[1]
    finally:
        await kernel.stop()


async def test_acknowledged_responses_survive_sigkill_and_the_chain_continues(home, openai_upstream,
                                                                             unused_tcp_port):
    token, other_token = await prepare_home(openai_upstream)
    url = f"http://127.0.0.1:{unused_tcp_port}/v1"
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        async with openai.AsyncOpenAI(base_url=url, api_key=token, max_retries=0) as client:
            first = await client.responses.create(model="default", input="Remember the word 'teal'.")
            async with client.responses.stream(model="default", input="And 'amber'.",
                                               previous_response_id=first.id) as s:
                second = await s.get_final_response()
        daemon.send_signal(signal.SIGKILL)  # at once, after the acknowledgements: no clean shutdown
        assert await asyncio.wait_for(daemon.wait(), 30) == -signal.SIGKILL
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()

    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        async with openai.AsyncOpenAI(base_url=url, api_key=token, max_retries=0) as client:
            assert (await client.responses.retrieve(second.id)).output_text == second.output_text
            r = await client.chat.completions.create(model="default", messages=[{"role": "user", "content": "x"}])
            assert r.choices  # the socket serves as before
            third = await client.responses.create(model="default", input="Both words?",
                                                  previous_response_id=second.id)
            assert third.status == "completed"
        sent = openai_upstream.requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == [
            "Remember the word 'teal'.", "And 'amber'.", "Both words?"]
        async with openai.AsyncOpenAI(base_url=url, api_key=other_token, max_retries=0) as other:
            with pytest.raises(openai.NotFoundError) as e:
                await other.responses.retrieve(second.id)
            assert e.value.body["message"].startswith("Response with id")
    finally:
        assert await stop_daemon(daemon) == 0
