"""Shared fixtures: an isolated ByenatOS home per test, and the fake upstreams."""

from __future__ import annotations

import os

import pytest

# Fake upstream servers register their fixtures in their own modules.
pytest_plugins = [
    "tests.fakes.openai_upstream",
    "tests.fakes.anthropic_upstream",
    "tests.fakes.ollama_upstream",
    "tests.fakes.gguf_models",
    "tests.fakes.gemini_upstream",
]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh BYENATOS_HOME; nothing from the developer's real settings leaks in."""
    root = tmp_path / "byenatos-home"
    monkeypatch.setenv("BYENATOS_HOME", str(root))
    # Provider keys in the developer's environment must not become providers in tests.
    for var in list(os.environ):
        if var.endswith("_API_KEY"):
            monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
async def kernel(home):
    """A started Kernel in an isolated home, with secrets in the encrypted-file fallback."""
    from app.kernel.kernel import Kernel
    from app.kernel.security.secrets import BACKEND_ENV

    os.environ[BACKEND_ENV] = "file"
    k = await Kernel().start()
    try:
        yield k
    finally:
        await k.stop()
        os.environ.pop(BACKEND_ENV, None)


@pytest.fixture
async def kernel_with_openai(kernel, openai_upstream):
    """The kernel with the fake OpenAI upstream registered as provider `fake` and its models listed."""
    await kernel.add_provider("fake", "openai", base_url=openai_upstream.api_base)
    await kernel.refresh_provider("fake")
    return kernel
