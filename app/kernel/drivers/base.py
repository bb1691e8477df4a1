"""The driver contract: what every backend (cloud API, local server, in-process GGUF) offers.

A driver speaks one wire protocol to one provider (a base URL plus a key, or a folder of
GGUF files). It takes and returns canonical shapes (`app.kernel.canonical`) and raises
only typed errors (`app.kernel.errors`), so the router can treat all backends alike.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from app.kernel.canonical import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResult,
    HealthStatus,
    ModelSpec,
    ProviderConfig,
)
from app.kernel.errors import ConfigError, NotSupportedError

TOOL_CALL_MODES = ("auto", "native", "prompted")


def prompted_tools(config: ProviderConfig, native: bool | None, override: Any = None) -> bool:
    """Whether a model's tool calls go through the prompt (Capabilities.prompted_tools).

    `native`: what the backend says of the model (True: it calls tools; False: it cannot;
    None: it does not say, so the API's `tools` are tried). The provider's `tool_calls` option,
    or a per-model `override` where the driver has them, is "native", "prompted" or "auto"
    (the default: follow `native`)."""
    mode = override if override is not None else config.options.get("tool_calls", "auto")
    if mode not in TOOL_CALL_MODES:
        raise ConfigError(f"tool_calls {mode!r} for provider {config.id!r}: one of {', '.join(TOOL_CALL_MODES)}")
    return mode == "prompted" or (mode == "auto" and native is False)


class Driver(abc.ABC):
    """Base class of all drivers. Subclasses override what their protocol supports."""

    kind: ClassVar[str]
    #: True for runtimes that hold weights in this process or a local server (load/unload matter)
    manages_memory: ClassVar[bool] = False
    #: True for a runtime that can pause a running generation at a token boundary and resume it
    #: later with nothing lost or repeated. The router then gives every call on it a scheduler
    #: `Hold` (app.kernel.scheduler.current_hold, set in the calling task) and asks the holder
    #: of a less urgent call to yield when a more urgent one queues (`Hold.preempt_requested`,
    #: `Hold.on_preempt`, `Hold.lend`). On for the in-process llama.cpp driver (docs/dev/preemption.md).
    preemptible: ClassVar[bool] = False

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    @property
    def provider_id(self) -> str:
        return self.config.id

    @abc.abstractmethod
    async def list_models(self) -> list[ModelSpec]:
        """The models this provider offers now (asks the backend where it can)."""

    @abc.abstractmethod
    async def chat(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        """One complete answer. `model` is the resolved spec; `request.model` may be an alias."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[ChatChunk]:
        """Chunks as they arrive. The last chunk carries `finish_reason`; usage when known.

        Closing the iterator (or cancelling the task consuming it) must stop the upstream work.
        """

    async def embed(self, texts: list[str], model: ModelSpec) -> EmbeddingResult:
        raise NotSupportedError(f"{self.kind} provider does not serve embeddings", provider=self.provider_id)

    @abc.abstractmethod
    async def health(self) -> HealthStatus:
        """A cheap probe: is the backend reachable and answering?"""

    async def load(self, model: ModelSpec) -> None:
        """Bring a local model into memory. Cloud drivers have nothing to do."""

    async def unload(self, model: ModelSpec) -> None:
        """Free a local model's memory."""

    async def loaded_models(self) -> list[str]:
        """Names of the models resident now (local runtimes); cloud drivers report none."""
        return []

    async def aclose(self) -> None:
        """Release connections, threads and native memory."""
