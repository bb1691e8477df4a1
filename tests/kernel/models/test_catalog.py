"""The model catalog: facts from litellm's bundled model map, read without importing litellm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.kernel.canonical import Capabilities, ModelSpec
from app.kernel.models import catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_map(tmp_path, monkeypatch):
    """Point the catalog at a small hand-written map (restored to the real one afterwards)."""

    def use(entries: dict | str) -> Path:
        path = tmp_path / catalog.MAP_FILE
        path.write_text(entries if isinstance(entries, str) else json.dumps(entries))
        monkeypatch.setattr(catalog, "map_path", lambda: path)
        catalog._reset_for_tests()
        return path

    yield use
    catalog._reset_for_tests()


def test_catalog_is_available_and_says_where_from():
    available, detail = catalog.catalog_status()
    assert available, detail
    assert catalog.MAP_FILE in detail


def test_gpt_4o_has_a_large_window_tools_and_prices():
    entry = catalog.lookup("gpt-4o")
    assert entry is not None
    assert entry.litellm_provider == "openai"
    assert entry.context_window >= 128_000
    assert entry.max_output_tokens and entry.max_output_tokens >= 4096
    assert entry.supports_tools and entry.supports_vision
    assert 0 < entry.input_cost_per_token < entry.output_cost_per_token < 1e-3
    assert entry.vendor == "openai"


@pytest.mark.parametrize(
    ("name", "provider", "litellm_provider", "vendor", "min_window"),
    [
        ("gemini/gemini-2.5-pro", None, "gemini", "google", 1_000_000),
        ("gemini-2.5-pro", "gemini", "gemini", "google", 1_000_000),
        ("gemini-2.5-pro", None, "gemini", "google", 1_000_000),  # the maker's own route first
        ("gemini-2.5-pro", "google", "gemini", "google", 1_000_000),  # our id, litellm's route name
        ("deepseek/deepseek-chat", None, "deepseek", "deepseek", 64_000),
        ("deepseek-chat", "deepseek", "deepseek", "deepseek", 64_000),
        ("anthropic/claude-sonnet-4-5", None, "anthropic", "anthropic", 200_000),
        ("openrouter/anthropic/claude-sonnet-4-5", None, "anthropic", "anthropic", 200_000),
        ("openrouter/openai/gpt-4o", None, "openai", "openai", 128_000),
        ("groq/openai/gpt-oss-120b", None, "groq", "openai", 100_000),
        ("gpt-oss-120b", "groq", "groq", "openai", 100_000),
        ("GPT-4o", None, "openai", "openai", 128_000),
        ("openrouter/anthropic/claude-sonnet-4.5", "openrouter", "anthropic", "anthropic", 200_000),
    ],
)
def test_lookup_matches_bare_and_routed_names(name, provider, litellm_provider, vendor, min_window):
    entry = catalog.lookup(name, provider)
    assert entry is not None, name
    assert entry.litellm_provider == litellm_provider
    assert entry.vendor == vendor
    assert entry.mode == "chat"
    assert entry.context_window >= min_window


def test_provider_hint_picks_that_providers_listing():
    azure = catalog.lookup("gpt-4o", "azure")
    assert azure is not None and azure.litellm_provider == "azure"
    assert catalog.lookup("gpt-4o").litellm_provider == "openai"


@pytest.mark.parametrize("name", ["no-such-model-xyz", "gemini/no-such-model", "", "   ", "/"])
def test_unknown_names_are_none(name):
    assert catalog.lookup(name) is None


def test_embedding_models_are_marked_as_such():
    entry = catalog.lookup("text-embedding-3-small")
    assert entry is not None and entry.is_embedding
    caps = entry.capabilities()
    assert caps.embeddings and not caps.chat and not caps.streaming


def test_known_models_lists_a_providers_chat_and_embedding_models():
    gemini = catalog.known_models("gemini")
    names = [e.name for e in gemini]
    assert "gemini-2.5-pro" in names and "gemini-2.5-flash" in names
    assert any(e.is_embedding for e in gemini)
    assert all(e.litellm_provider == "gemini" and e.mode in ("chat", "embedding") for e in gemini)
    assert names == sorted(set(names)), "one entry per name, sorted"
    assert not any(e.deprecated for e in gemini)
    assert catalog.known_models("no-such-provider") == []


def test_known_specs_are_specs_of_our_provider():
    specs = catalog.known_specs("my-gemini", "gemini")
    pro = next(s for s in specs if s.name == "gemini-2.5-pro")
    assert pro.id == "my-gemini/gemini-2.5-pro" and pro.provider == "my-gemini"
    assert pro.context_window >= 1_000_000 and pro.capabilities.tools and pro.vendor == "google"


def test_enrich_fills_defaults():
    spec = ModelSpec(id="gemini/gemini-2.5-pro", name="gemini-2.5-pro", provider="gemini")
    rich = catalog.enrich(spec)
    assert rich is not spec and spec.context_window == 4096, "the input is not modified"
    assert rich.context_window >= 1_000_000
    assert rich.max_output_tokens and rich.max_output_tokens >= 8192
    assert rich.input_cost_per_token > 0 and rich.output_cost_per_token > rich.input_cost_per_token
    assert rich.capabilities.tools and rich.capabilities.vision and rich.capabilities.json_mode
    assert rich.vendor == "google"
    assert rich.quality != 0.5 and 0.3 <= rich.quality <= 0.9


def test_enrich_keeps_explicit_values():
    spec = ModelSpec(
        id="o/gpt-4o",
        name="gpt-4o",
        provider="openai",
        context_window=8000,
        input_cost_per_token=1e-9,
        vendor="someone",
        quality=0.99,
        capabilities=Capabilities(tools=False),
    )
    rich = catalog.enrich(spec)
    assert rich.context_window == 8000
    assert rich.input_cost_per_token == 1e-9
    assert rich.vendor == "someone" and rich.quality == 0.99
    assert rich.capabilities.tools is False, "an explicitly stated flag wins"
    assert rich.capabilities.vision is True, "flags nobody stated come from the catalog"
    assert rich.output_cost_per_token > 0 and rich.max_output_tokens


def test_enrich_leaves_local_and_unknown_models_alone():
    local = ModelSpec(id="ollama/gpt-4o", name="gpt-4o", provider="ollama", local=True)
    assert catalog.enrich(local) == local
    unknown = ModelSpec(id="x/mystery", name="mystery-model-1", provider="x")
    assert catalog.enrich(unknown) == unknown


def test_enrich_turns_an_embedding_model_into_one():
    spec = catalog.enrich(ModelSpec(id="o/e", name="text-embedding-3-small", provider="openai"))
    assert spec.capabilities.embeddings and not spec.capabilities.chat


def test_quality_rises_with_price_tier():
    mini, flagship = catalog.lookup("gpt-4o-mini"), catalog.lookup("gpt-4o")
    assert mini is not None and flagship is not None
    assert mini.quality < flagship.quality
    assert catalog.quality_from_price(0.0) == 0.5
    assert catalog.quality_from_price(1e-3) <= 0.9 and catalog.quality_from_price(1e-12) >= 0.3
    assert catalog.quality_from_price(1e-5, reasoning=True) > catalog.quality_from_price(1e-5)


def test_a_malformed_map_entry_is_skipped(tiny_map):
    tiny_map(
        {
            "sample_spec": {"max_input_tokens": "max input tokens", "litellm_provider": "x", "mode": "chat"},
            "broken": "not an object",
            "no-provider": {"mode": "chat"},
            "weird/model": {
                "litellm_provider": "weird",
                "mode": "chat",
                "max_input_tokens": "lots",
                "input_cost_per_token": None,
                "supports_function_calling": True,
            },
        }
    )
    assert catalog.lookup("broken") is None and catalog.lookup("no-provider") is None
    entry = catalog.lookup("weird/model")
    assert entry is not None and entry.name == "model"
    assert entry.context_window is None and entry.input_cost_per_token == 0.0 and entry.supports_tools


def test_an_unreadable_map_gives_an_empty_catalog_that_says_why(tiny_map):
    tiny_map("{ not json")
    assert catalog.lookup("gpt-4o") is None
    assert catalog.known_models("openai") == []
    available, detail = catalog.catalog_status()
    assert not available and "cannot read" in detail


def test_without_litellm_the_catalog_is_empty_not_broken(monkeypatch):
    monkeypatch.setattr(catalog, "map_path", lambda: None)
    catalog._reset_for_tests()
    try:
        spec = ModelSpec(id="o/gpt-4o", name="gpt-4o", provider="openai")
        assert catalog.lookup("gpt-4o") is None
        assert catalog.enrich(spec) == spec
        assert catalog.known_specs("openai", "openai") == []
        available, detail = catalog.catalog_status()
        assert not available and "not installed" in detail
    finally:
        catalog._reset_for_tests()


def test_importing_and_using_the_catalog_does_not_import_litellm():
    code = (
        "import sys\n"
        "from app.kernel.models import catalog\n"
        "assert catalog.lookup('gpt-4o') is not None\n"
        "assert catalog.known_models('gemini')\n"
        "import app.kernel.drivers.litellm_driver\n"  # the driver module itself stays light too
        "print('litellm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_map_loads_quickly():
    catalog._reset_for_tests()
    catalog.lookup("gpt-4o")
    # measured ~40 ms for ~4,000 entries; a generous ceiling keeps slow CI machines green
    assert catalog._catalog().load_ms < 1500
