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


@pytest.mark.parametrize(
    ("routed", "provider"),
    [
        (True, None),  # "gemini/gemini-x"
        (False, "gemini"),
        (False, None),  # the maker's own route first
        (False, "google"),  # our id, litellm's route name
    ],
)
def test_lookup_finds_a_gemini_model_by_bare_and_routed_name(listed_models, routed, provider):
    model = next(m for m in listed_models("gemini") if m.name.startswith("gemini-"))
    entry = catalog.lookup(f"gemini/{model.name}" if routed else model.name, provider)
    assert entry is not None, model.name
    assert entry.key == model.key and entry.litellm_provider == "gemini"
    assert entry.vendor == "google" and entry.mode == "chat"
    assert entry.context_window == model.context_window


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
    assert any(e.mode == "chat" for e in gemini) and any(e.is_embedding for e in gemini)
    assert all(e.litellm_provider == "gemini" and e.mode in ("chat", "embedding") for e in gemini)
    assert names == sorted(set(names)), "one entry per name, sorted"
    assert all(catalog.lookup(f"gemini/{name}") for name in names), "each one found by its route"
    assert not any(e.deprecated for e in gemini)
    everything = catalog.known_models("gemini", include_deprecated=True)
    assert {e.key for e in gemini} <= {e.key for e in everything}
    assert all(e.deprecated for e in everything if e.name not in names)
    assert catalog.known_models("no-such-provider") == []


def test_known_models_leaves_out_models_past_their_deprecation_date(tiny_map):
    chat = {"litellm_provider": "gemini", "mode": "chat", "max_input_tokens": 1000}
    tiny_map(
        {
            "gemini/old": {**chat, "deprecation_date": "2001-01-01"},
            "gemini/retiring": {**chat, "deprecation_date": "2999-12-31"},
            "gemini/current": chat,
            "gemini/embedder": {**chat, "mode": "embedding"},
            "gemini/painter": {**chat, "mode": "image_generation"},
            "current": {**chat, "max_input_tokens": 5},  # a bare duplicate of the routed key
        }
    )
    assert [e.name for e in catalog.known_models("gemini")] == ["current", "embedder", "retiring"]
    assert catalog.known_models("gemini")[0].key == "gemini/current", "the routed key wins"
    everything = catalog.known_models("gemini", include_deprecated=True)
    assert [e.name for e in everything] == ["current", "embedder", "old", "retiring"]
    assert catalog.lookup("gemini/old").deprecated, "lookup still finds it, marked"


def test_known_specs_are_specs_of_our_provider(listed_models):
    model = listed_models("gemini", tools=True)[0]
    specs = catalog.known_specs("my-gemini", "gemini")
    spec = next(s for s in specs if s.name == model.name)
    assert spec.id == f"my-gemini/{model.name}" and spec.provider == "my-gemini"
    assert spec.context_window == model.context_window and spec.capabilities.tools
    assert spec.vendor == "google"


def test_enrich_fills_defaults(listed_models):
    model = listed_models("gemini", tools=True, vision=True, json_mode=True, priced=True, min_window=8192)[0]
    spec = ModelSpec(id=f"gemini/{model.name}", name=model.name, provider="gemini")
    rich = catalog.enrich(spec)
    assert rich is not spec and spec.context_window == 4096, "the input is not modified"
    assert rich.context_window == model.context_window
    assert rich.max_output_tokens and rich.max_output_tokens == model.max_output_tokens
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
