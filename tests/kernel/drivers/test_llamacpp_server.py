"""The OpenAI-compatible driver against the real `python -m llama_cpp.server` on loopback.

llama.cpp's server is one of the local backends users run; this checks our driver and
its wire format (models, usage, streaming, error mapping) against the genuine article,
serving the tiny random-weight GGUF.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from app.kernel.canonical import ChatRequest
from app.kernel.drivers import ProviderConfig, create_driver
from app.kernel.errors import ContextWindowExceededError

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.llama

READY_WITHIN = 60.0  # seconds; a cold start imports fastapi/uvicorn and maps the model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tiny_gguf, tmp_path_factory) -> Iterator[str]:
    """A running llama.cpp server; yields its /v1 base URL and terminates it afterwards."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(tiny_gguf), "--model_alias", "tiny-chat",
                "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", "512", "--n_threads", "2", "--verbose", "False",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_PROXY": "127.0.0.1"},
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + READY_WITHIN
        while True:  # readiness has no event to await from another process: poll, bounded
            if proc.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{base_url}/models", timeout=1.0, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server not ready after {READY_WITHIN:.0f} s:\n{log_path.read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def driver(llama_server):
    driver = create_driver(ProviderConfig(id="llamacpp-server", kind="openai", base_url=llama_server))
    yield driver
    await driver.aclose()


def ask(max_tokens: int, text: str = "hello world") -> ChatRequest:
    return ChatRequest(model="default", messages=[{"role": "user", "content": text}], max_tokens=max_tokens)


async def test_lists_the_served_model(driver):
    (spec,) = await driver.list_models()
    assert spec.name == "tiny-chat"
    assert spec.id == "llamacpp-server/tiny-chat"
    assert spec.local  # a loopback server counts as this machine
    assert (await driver.health()).ok


async def test_chat_reports_usage(driver):
    (spec,) = await driver.list_models()
    response = await driver.chat(ask(8), spec)

    assert response.finish_reason == "length"
    assert response.usage.completion_tokens == 8
    assert response.usage.prompt_tokens > 5
    assert response.usage.total_tokens == response.usage.prompt_tokens + 8
    assert isinstance(response.message.content, str) and response.message.content


async def test_stream_arrives_in_chunks_and_ends_with_a_finish_reason(driver):
    (spec,) = await driver.list_models()
    chunks = [c async for c in driver.stream(ask(12), spec)]

    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    # the tiny model emits one plain-text token per chunk
    assert sum(1 for c in chunks if c.text()) == 12
    assert all(c.model for c in chunks)
    # llama_cpp.server ignores stream_options.include_usage: no usage chunk to check here


async def test_an_overlong_prompt_is_a_context_error(driver):
    (spec,) = await driver.list_models()
    with pytest.raises(ContextWindowExceededError):
        await driver.chat(ask(8, "hello " * 600), spec)
