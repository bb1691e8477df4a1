"""Known model providers: what the user can pick in "add a provider" without typing URLs.

A preset is only a starting point — the registry stores the user's own copy (URL, key
reference) — so everything here is frozen and importing it costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.kernel.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    id: str
    display_name: str
    kind: str  # a key of app.kernel.drivers.DRIVER_KINDS
    base_url: str | None = None  # None: the driver or litellm knows where to go (or the user must say)
    key_env: str | None = None  # the environment variable that conventionally holds the key
    key_required: bool = True
    docs_url: str | None = None  # where the user gets a key (cloud) or the product's docs (local)
    litellm_provider: str | None = None  # for kind "litellm": the provider prefix litellm routes on
    base_url_env: str | None = None  # a second variable the provider cannot work without (Azure's endpoint)
    local: bool = False  # runs on this machine
    aliases: tuple[str, ...] = ()

    @property
    def needs_base_url(self) -> bool:
        """True when the user must supply the endpoint (no public default exists)."""
        return self.base_url is None and self.base_url_env is not None


_PRESETS: tuple[ProviderPreset, ...] = (
    # -- cloud APIs with their own wire protocol ---------------------------------------------
    ProviderPreset(
        id="openai",
        display_name="OpenAI",
        kind="openai",
        base_url="https://api.openai.com/v1",
        key_env="OPENAI_API_KEY",
        docs_url="https://platform.openai.com/api-keys",
    ),
    ProviderPreset(
        id="anthropic",
        display_name="Anthropic",
        kind="anthropic",
        base_url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
        docs_url="https://console.anthropic.com/settings/keys",
        aliases=("claude",),
    ),
    # -- OpenAI-compatible clouds: the openai driver with another base URL ------------------------
    ProviderPreset(
        id="deepseek",
        display_name="DeepSeek",
        kind="openai",
        base_url="https://api.deepseek.com/v1",
        key_env="DEEPSEEK_API_KEY",
        docs_url="https://platform.deepseek.com/api_keys",
    ),
    ProviderPreset(
        id="moonshot",
        display_name="Moonshot AI (Kimi)",
        kind="openai",
        base_url="https://api.moonshot.ai/v1",
        key_env="MOONSHOT_API_KEY",
        docs_url="https://platform.moonshot.ai/console/api-keys",
        aliases=("kimi",),
    ),
    ProviderPreset(
        id="groq",
        display_name="Groq",
        kind="openai",
        base_url="https://api.groq.com/openai/v1",
        key_env="GROQ_API_KEY",
        docs_url="https://console.groq.com/keys",
    ),
    ProviderPreset(
        id="openrouter",
        display_name="OpenRouter",
        kind="openai",
        base_url="https://openrouter.ai/api/v1",
        key_env="OPENROUTER_API_KEY",
        docs_url="https://openrouter.ai/settings/keys",
    ),
    ProviderPreset(
        id="mistral",
        display_name="Mistral AI",
        kind="openai",
        base_url="https://api.mistral.ai/v1",
        key_env="MISTRAL_API_KEY",
        docs_url="https://console.mistral.ai/api-keys",
    ),
    ProviderPreset(
        id="together",
        display_name="Together AI",
        kind="openai",
        base_url="https://api.together.xyz/v1",
        key_env="TOGETHER_API_KEY",
        docs_url="https://api.together.ai/settings/api-keys",
    ),
    ProviderPreset(
        id="xai",
        display_name="xAI (Grok)",
        kind="openai",
        base_url="https://api.x.ai/v1",
        key_env="XAI_API_KEY",
        docs_url="https://console.x.ai",
        aliases=("grok",),
    ),
    # -- the long tail through litellm: it knows their formats and auth ---------------------------
    ProviderPreset(
        id="gemini",
        display_name="Google Gemini",
        kind="litellm",
        base_url=None,
        key_env="GEMINI_API_KEY",
        docs_url="https://aistudio.google.com/apikey",
        litellm_provider="gemini",
        aliases=("google",),
    ),
    ProviderPreset(
        id="azure",
        display_name="Azure OpenAI",
        kind="litellm",
        base_url=None,
        key_env="AZURE_API_KEY",
        docs_url="https://portal.azure.com",
        litellm_provider="azure",
        base_url_env="AZURE_API_BASE",
    ),
    ProviderPreset(
        # Bedrock API keys; litellm also accepts the usual AWS credential chain
        id="bedrock",
        display_name="Amazon Bedrock",
        kind="litellm",
        base_url=None,
        key_env="AWS_BEARER_TOKEN_BEDROCK",
        docs_url="https://console.aws.amazon.com/bedrock/home#/api-keys",
        litellm_provider="bedrock",
    ),
    ProviderPreset(
        id="cohere",
        display_name="Cohere",
        kind="litellm",
        base_url=None,
        key_env="COHERE_API_KEY",
        docs_url="https://dashboard.cohere.com/api-keys",
        litellm_provider="cohere",
    ),
    # -- servers on this machine: no key, loopback URLs ------------------------------------------
    ProviderPreset(
        id="ollama",
        display_name="Ollama",
        kind="ollama",
        base_url="http://127.0.0.1:11434",
        key_required=False,
        docs_url="https://ollama.com/download",
        local=True,
    ),
    ProviderPreset(
        id="lmstudio",
        display_name="LM Studio",
        kind="openai",
        base_url="http://127.0.0.1:1234/v1",
        key_required=False,
        docs_url="https://lmstudio.ai/docs/app/api",
        local=True,
        aliases=("lm-studio",),
    ),
    ProviderPreset(
        id="llamacpp-server",
        display_name="llama.cpp server",
        kind="openai",
        base_url="http://127.0.0.1:8080/v1",
        key_required=False,
        docs_url="https://github.com/ggml-org/llama.cpp/tree/master/tools/server",
        local=True,
        aliases=("llama-server",),
    ),
    ProviderPreset(
        id="vllm",
        display_name="vLLM",
        kind="openai",
        base_url="http://127.0.0.1:8000/v1",
        key_required=False,
        docs_url="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
        local=True,
    ),
    # -- in-process GGUF through llama-cpp-python ---------------------------------------------------
    ProviderPreset(
        id="local",
        display_name="Local GGUF models",
        kind="llamacpp",
        base_url=None,
        key_required=False,
        docs_url="https://huggingface.co/models?library=gguf",
        local=True,
    ),
)

PRESETS: dict[str, ProviderPreset] = {p.id: p for p in _PRESETS}
_BY_NAME: dict[str, ProviderPreset] = {name: p for p in _PRESETS for name in (p.id, *p.aliases)}


def get_preset(name: str) -> ProviderPreset:
    """The preset for an id or alias (case-insensitive); ConfigError names the known ones."""
    try:
        return _BY_NAME[name.strip().lower()]
    except (KeyError, AttributeError):  # AttributeError: not a string at all (a bad settings file)
        raise ConfigError(f"unknown provider preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def find_preset(name: str) -> ProviderPreset | None:
    """Like get_preset, but None for a name that is not a preset (a user's own server)."""
    return _BY_NAME.get(name.strip().lower())


def presets_by_env() -> dict[str, ProviderPreset]:
    """Environment variable name → the preset whose key it holds (cloud providers only)."""
    return {p.key_env: p for p in _PRESETS if p.key_env}
