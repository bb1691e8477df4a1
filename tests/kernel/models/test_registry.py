from __future__ import annotations

import pytest

from app.kernel.canonical import ModelSpec
from app.kernel.errors import ConfigError, ModelNotFoundError, NotFoundError


def spec(provider: str, name: str, **kw) -> ModelSpec:
    return ModelSpec(id=f"{provider}/{name}", name=name, provider=provider, **kw)


async def test_key_goes_to_the_secret_store_never_the_database(kernel):
    reg = kernel.registry
    info = reg.add_provider("openai", "openai", base_url="https://api.openai.com/v1", api_key="sk-TOPSECRET-42")
    assert info.has_key and info.key_source == "secret"
    assert reg.provider_config("openai").api_key == "sk-TOPSECRET-42"
    assert "TOPSECRET" not in repr(reg.provider_config("openai"))
    for f in kernel.paths.data_dir.glob("byenatos.sqlite3*"):
        assert b"TOPSECRET" not in f.read_bytes()


async def test_env_key_is_read_at_use(kernel, monkeypatch):
    reg = kernel.registry
    reg.add_provider("groq", "openai", base_url="https://api.groq.com/openai/v1", key_env="GROQ_API_KEY",
                     origin="env")
    assert not reg.provider("groq").has_key
    monkeypatch.setenv("GROQ_API_KEY", "gsk-1")
    assert reg.provider("groq").has_key
    assert reg.provider_config("groq").api_key == "gsk-1"


@pytest.mark.parametrize("kwargs,match", [
    ({"id": "Bad Id", "kind": "openai"}, "lower-case"),
    ({"id": "x", "kind": "telepathy"}, "unknown provider kind"),
    ({"id": "x", "kind": "openai", "base_url": "ftp://nope"}, "http"),
])
async def test_bad_provider_input_is_a_config_error(kernel, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        kernel.registry.add_provider(**kwargs)


async def test_discovery_never_overwrites_a_user_provider(kernel):
    reg = kernel.registry
    reg.add_provider("ollama", "ollama", base_url="http://10.0.0.5:11434")
    reg.add_provider("ollama", "ollama", base_url="http://127.0.0.1:11434", origin="discovered")
    assert reg.provider("ollama").base_url == "http://10.0.0.5:11434"


async def test_find_model_by_id_bare_name_ambiguous_and_unknown(kernel):
    reg = kernel.registry
    reg.add_provider("a", "openai", base_url="http://127.0.0.1:1/v1")
    reg.add_provider("b", "openai", base_url="http://127.0.0.1:2/v1")
    reg.upsert_models("a", [spec("a", "llama"), spec("a", "only-a")])
    reg.upsert_models("b", [spec("b", "llama")])
    assert reg.find_model("a/llama").provider == "a"
    assert reg.find_model("only-a").id == "a/only-a"
    with pytest.raises(ModelNotFoundError, match="several providers") as e:
        reg.find_model("llama")
    assert e.value.available == ["a/llama", "b/llama"]
    with pytest.raises(ModelNotFoundError, match="available: a/llama") as e:
        reg.find_model("nope")
    assert "b/llama" in e.value.available


async def test_upsert_replace_drops_models_no_longer_offered_but_keeps_user_ones(kernel):
    reg = kernel.registry
    reg.add_provider("a", "openai", base_url="http://127.0.0.1:1/v1")
    reg.upsert_models("a", [spec("a", "old"), spec("a", "kept")])
    reg.add_model("a", "mine")
    reg.upsert_models("a", [spec("a", "kept"), spec("a", "new")], replace=True)
    assert [m.id for m in reg.models()] == ["a/kept", "a/mine", "a/new"]


async def test_remove_provider_removes_its_models_and_key(kernel):
    reg = kernel.registry
    reg.add_provider("a", "openai", base_url="http://127.0.0.1:1/v1", api_key="k")
    reg.upsert_models("a", [spec("a", "m")])
    reg.remove_provider("a")
    assert reg.models() == []
    assert kernel.secrets.get("provider:a") is None
    with pytest.raises(NotFoundError):
        reg.remove_provider("a")
