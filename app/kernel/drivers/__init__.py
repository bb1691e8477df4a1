"""One driver per wire protocol. `load_driver_class(kind)` imports a driver only when used."""

from __future__ import annotations

from importlib import import_module

from app.kernel.drivers.base import Driver, ProviderConfig
from app.kernel.errors import ConfigError

# kind → "module:Class"; kept as strings so that importing the kernel never imports
# httpx-heavy or native drivers (llama_cpp, litellm) nobody configured.
DRIVER_KINDS: dict[str, str] = {
    "openai": "app.kernel.drivers.openai_compat:OpenAICompatDriver",
    "anthropic": "app.kernel.drivers.anthropic:AnthropicDriver",
    "ollama": "app.kernel.drivers.ollama:OllamaDriver",
    "llamacpp": "app.kernel.drivers.llamacpp:LlamaCppDriver",
    "litellm": "app.kernel.drivers.litellm_driver:LiteLLMDriver",
}


def load_driver_class(kind: str) -> type[Driver]:
    try:
        target = DRIVER_KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown provider kind {kind!r}; known kinds: {', '.join(sorted(DRIVER_KINDS))}") from None
    module_name, _, class_name = target.partition(":")
    cls: type[Driver] = getattr(import_module(module_name), class_name)
    return cls


def create_driver(config: ProviderConfig) -> Driver:
    return load_driver_class(config.kind)(config)


__all__ = ["DRIVER_KINDS", "Driver", "ProviderConfig", "create_driver", "load_driver_class"]
