"""The canonical request/response shapes used inside the kernel.

They follow OpenAI Chat Completions (the de-facto lingua franca): drivers translate
these to their wire format, and the compat layer translates other client formats
(Anthropic Messages, Ollama) in and out. Unknown fields are kept (`extra="allow"`) so a
same-format pass-through never loses a vendor option the kernel does not know about.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call", "error"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class FunctionCall(_Open):
    name: str | None = None
    arguments: str = ""


class ToolCall(_Open):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None  # present in stream deltas only


class ChatMessage(_Open):
    role: Role
    # str, a list of content parts ({"type": "text"|"image_url", ...}) or None (tool-call turns)
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, with content parts joined; images ignored."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")


class ChatRequest(_Open):
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    n: int | None = None
    user: str | None = None
    stream_options: dict[str, Any] | None = None

    def output_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def wire_dict(self, *, model: str | None = None) -> dict[str, Any]:
        """The request as OpenAI JSON, without unset fields, optionally naming another model."""
        body = self.model_dump(exclude_none=True)
        if model is not None:
            body["model"] = model
        return body


class Usage(_Open):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class Choice(_Open):
    index: int = 0
    message: ChatMessage
    finish_reason: FinishReason | None = None


class ChatResponse(_Open):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage | None = None

    @property
    def message(self) -> ChatMessage:
        return self.choices[0].message

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.choices[0].finish_reason


class Delta(_Open):
    role: Role | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChunkChoice(_Open):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: FinishReason | None = None


class ChatChunk(_Open):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None

    def text(self) -> str:
        return "".join(c.delta.content or "" for c in self.choices)


class EmbeddingResult(BaseModel):
    model: str
    vectors: list[list[float]]
    usage: Usage = Field(default_factory=Usage)


class Repository(StrEnum):
    LOCAL = "local"  # a file or a runtime on this machine
    OFFICIAL = "official"  # vendor-published weights
    COMMUNITY = "community"  # third-party quantisations, fine-tunes
    PRIVATE = "private"  # the user's own
    CLOUD = "cloud"  # served by a remote API


class Capabilities(BaseModel):
    chat: bool = True
    streaming: bool = True
    tools: bool = False
    vision: bool = False
    json_mode: bool = False
    embeddings: bool = False
    # Tool calls go through the prompt (app.kernel.tools.prompted), not the API's `tools`: the
    # model, or its chat template, has none (docs/dev/tool-calls.md). Off: `tools` is sent.
    prompted_tools: bool = False


class ModelSpec(BaseModel):
    """What the kernel knows about one model offered by one provider."""

    model_config = ConfigDict(extra="ignore")

    id: str  # globally unique: "<provider>/<name>"
    name: str  # what the provider calls it
    provider: str  # provider id in the registry
    vendor: str = "unknown"  # who made it (openai, meta, mistral…)
    context_window: int = 4096
    max_output_tokens: int | None = None
    capabilities: Capabilities = Field(default_factory=Capabilities)
    input_cost_per_token: float = 0.0
    output_cost_per_token: float = 0.0
    local: bool = False
    memory_bytes: int | None = None  # resident memory needed when loaded (local models)
    quality: float = 0.5  # 0..1, a coarse score the router can rank on
    repository: Repository = Repository.CLOUD
    path: str | None = None  # GGUF file, for in-process models
    display_name: str | None = None  # the provider's human-readable name, when it gives one

    def cost(self, usage: Usage | None) -> float:
        if usage is None:
            return 0.0
        return usage.prompt_tokens * self.input_cost_per_token + usage.completion_tokens * self.output_cost_per_token


class HealthStatus(BaseModel):
    ok: bool
    latency_ms: float | None = None
    detail: str = ""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def model_id(provider: str, name: str) -> str:
    return f"{provider}/{name}"


@dataclass(slots=True)
class ProviderConfig:
    """One configured provider, as the registry hands it to a driver."""

    id: str  # "openai", "ollama", "lmstudio", "local"…
    kind: str  # a key of app.kernel.drivers.DRIVER_KINDS
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # resolved from the keyring, never logged
    options: dict[str, Any] = field(default_factory=dict)
    timeout: float = 600.0  # whole-request ceiling; connect timeouts are short (see drivers)
    connect_timeout: float = 5.0

    def __repr__(self) -> str:  # keep keys out of logs and tracebacks
        return f"ProviderConfig(id={self.id!r}, kind={self.kind!r}, base_url={self.base_url!r})"
