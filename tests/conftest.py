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
    "tests.fakes.agent_upstream",
]

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


# -- which installed packages differ from uv.lock (a drift run: docs/dev/dependencies.md) --------

_drift_lines: list[str] = []


def pytest_report_header(config):
    """One line when every package is as uv.lock pins it; else each package that moved."""
    from installers import lockfile

    found, source = lockfile.drift()
    lines = lockfile.report_lines(found, source)
    if found:
        _drift_lines[:] = lines
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After failures, the packages that differ from the lock again, next to the failures."""
    failed = terminalreporter.stats.get("failed") or terminalreporter.stats.get("error")
    if _drift_lines and failed:
        terminalreporter.section("packages that differ from uv.lock")
        for line in _drift_lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def listed_models():
    """Models litellm's installed map lists today, for tests that need a real one by name.

    `listed_models("gemini", tools=True, priced=True)` → that provider's catalog entries (current
    ones: past their deprecation date they are left out, as the app leaves them out), best
    first: the widest context window, then by name. Tests name models through this rather than
    hard-coding one: the map is an outside catalogue whose contents change with every litellm
    release (and with the calendar). Fails, saying so, when the map lists none that fit.
    """
    from app.kernel.models import catalog

    def pick(
        provider: str,
        *,
        mode: str = "chat",
        tools: bool = False,
        vision: bool = False,
        json_mode: bool = False,
        priced: bool = False,
        min_window: int = 0,
    ):
        entries = [
            e
            for e in catalog.known_models(provider, modes=(mode,))
            if (not tools or e.supports_tools)
            and (not vision or e.supports_vision)
            and (not json_mode or e.supports_json)
            and (not priced or 0 < e.input_cost_per_token < e.output_cost_per_token)
            and (e.context_window or 0) >= min_window
        ]
        entries.sort(key=lambda e: (-(e.context_window or 0), e.name))
        if not entries:
            pytest.fail(f"litellm's model map lists no current {provider} {mode} model that fits")
        return entries

    return pick


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
