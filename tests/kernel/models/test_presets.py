"""Provider presets: the table is complete, consistent with the drivers and the settings."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from app.kernel.config import DiscoverySettings
from app.kernel.drivers import DRIVER_KINDS
from app.kernel.errors import ConfigError
from app.kernel.models.presets import PRESETS, get_preset, presets_by_env

REQUIRED = [
    "openai", "anthropic", "gemini", "deepseek", "moonshot", "groq", "openrouter", "mistral", "together",
    "xai", "azure", "bedrock", "cohere", "ollama", "lmstudio", "llamacpp-server", "vllm", "local",
]  # fmt: skip


def test_every_required_provider_has_a_preset_with_a_known_driver_kind():
    for pid in REQUIRED:
        preset = get_preset(pid)
        assert preset.id == pid
        assert preset.kind in DRIVER_KINDS, pid
        assert preset.display_name


@pytest.mark.parametrize(
    ("pid", "kind", "base_url"),
    [
        ("deepseek", "openai", "https://api.deepseek.com/v1"),
        ("moonshot", "openai", "https://api.moonshot.ai/v1"),
        ("groq", "openai", "https://api.groq.com/openai/v1"),
        ("openrouter", "openai", "https://openrouter.ai/api/v1"),
        ("mistral", "openai", "https://api.mistral.ai/v1"),
        ("ollama", "ollama", "http://127.0.0.1:11434"),
        ("local", "llamacpp", None),
    ],
)
def test_known_endpoints(pid, kind, base_url):
    preset = get_preset(pid)
    assert (preset.kind, preset.base_url) == (kind, base_url)


def test_litellm_presets_name_their_litellm_provider_and_others_do_not():
    for preset in PRESETS.values():
        assert (preset.kind == "litellm") == (preset.litellm_provider is not None), preset.id
    assert get_preset("gemini").litellm_provider == "gemini"
    assert {get_preset(p).kind for p in ("gemini", "azure", "bedrock", "cohere")} == {"litellm"}


def test_local_servers_need_no_key_and_listen_on_loopback_only():
    for pid in ("ollama", "lmstudio", "llamacpp-server", "vllm"):
        preset = get_preset(pid)
        assert preset.local and not preset.key_required and preset.key_env is None
        assert urlsplit(preset.base_url).hostname == "127.0.0.1"


def test_cloud_presets_say_where_their_key_lives_and_where_to_get_one():
    for preset in PRESETS.values():
        if preset.local:
            continue
        assert preset.key_required and preset.key_env, preset.id
        assert preset.docs_url and preset.docs_url.startswith("https://"), preset.id
        assert preset.base_url is None or preset.base_url.startswith("https://"), preset.id


def test_discovery_defaults_point_at_the_presets_urls():
    # the settings' defaults and the presets must not drift apart
    for pid, url in DiscoverySettings().local_servers.items():
        assert get_preset(pid).base_url == url


def test_aliases_and_case_resolve_to_the_same_preset():
    assert get_preset("kimi") is get_preset("moonshot")
    assert get_preset(" OpenAI ") is get_preset("openai")


def test_unknown_preset_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as info:
        get_preset("openia")
    message = str(info.value)
    assert "openia" in message
    for pid in ("openai", "anthropic", "ollama", "local"):
        assert pid in message


def test_non_string_name_is_a_config_error_too():
    with pytest.raises(ConfigError):
        get_preset(None)  # type: ignore[arg-type]


def test_presets_by_env_maps_each_key_variable_to_its_preset():
    by_env = presets_by_env()
    assert by_env["OPENAI_API_KEY"].id == "openai"
    assert by_env["ANTHROPIC_API_KEY"].id == "anthropic"
    assert by_env["MOONSHOT_API_KEY"].id == "moonshot"
    assert all(p.key_env == var for var, p in by_env.items())
    assert len(by_env) == len([p for p in PRESETS.values() if p.key_env])  # no two presets share one
    assert not any(p.local for p in by_env.values())
