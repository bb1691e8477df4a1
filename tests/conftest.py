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
