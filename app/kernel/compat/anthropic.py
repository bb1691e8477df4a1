"""Canonical (OpenAI Chat shape) ⇄ Anthropic Messages: requests, responses, streams, errors.

Both directions are here because both are needed: the Anthropic driver sends canonical
requests to Anthropic, and the gateway serves Anthropic clients (`POST /v1/messages`)
from any backend, so it reads Anthropic requests and writes Anthropic answers.

We translate by hand instead of calling litellm's translation: importing litellm costs
2-4 s and this sits on every request's hot path. The formats are documented and small.

What does not survive translation, on purpose: cache_control markers, `thinking` blocks in
requests, `is_error` on tool results, `top_k`, the exact stop sequence that matched, and `n > 1`
(Anthropic has no such option, so it is refused rather than silently ignored).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.kernel.canonical import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionCall,
    ModelSpec,
    ToolCall,
    Usage,
)
from app.kernel.errors import (
    AuthenticationError,
    BadRequestError,
    ByenatosError,
    NotFoundError,
    NotSupportedError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamUnavailableError,
    from_http_status,
)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; used when neither request nor spec says
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")

_DATA_URL = re.compile(r"^data:(?P<media>[\w.+-]+/[\w.+-]+)(?:;[^,]*)?;base64,(?P<data>.*)$", re.DOTALL)

# Anthropic stop_reason ⇄ canonical finish_reason.
_FINISH_FROM_STOP: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_FROM_FINISH: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}

# Anthropic error type → the HTTP status Anthropic sends it with.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_from_stop(stop_reason: str | None) -> FinishReason | None:
    if stop_reason is None:
        return None
    return _FINISH_FROM_STOP.get(stop_reason, "stop")


def stop_from_finish(finish_reason: str | None) -> str:
    return _STOP_FROM_FINISH.get(finish_reason or "stop", "end_turn")


# ==========================================================================================
# Requests: canonical → Anthropic
# ==========================================================================================


def to_anthropic_request(
    request: ChatRequest,
    *,
    model: str | None = None,
    spec: ModelSpec | None = None,
    stream: bool | None = None,
) -> dict[str, Any]:
    """The Anthropic Messages body for a canonical request.

    `model` (or `spec.name`) replaces the request's model, which may be an alias.
    Raises BadRequestError / NotSupportedError for requests Anthropic cannot express.
    """
    if request.n is not None and request.n > 1:
        raise NotSupportedError("Anthropic returns one answer per request; n > 1 is not supported")
    body: dict[str, Any] = {
        "model": model or (spec.name if spec else request.model),
        "max_tokens": request.output_limit()
        or (spec.max_output_tokens if spec else None)
        or DEFAULT_MAX_TOKENS,
    }
    system, messages = _split_system(request.messages)
    if system is not None:
        body["system"] = system
    body["messages"] = _to_anthropic_messages(messages)
    if request.tools:
        body["tools"] = [_to_anthropic_tool(t) for t in request.tools]
        # Anthropic refuses tool_choice without tools, so it only goes out alongside them.
        tool_choice = _to_anthropic_tool_choice(
            request.tool_choice, getattr(request, "parallel_tool_calls", None)
        )
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    if request.stop:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.temperature is not None:
        # OpenAI's range is 0..2, Anthropic's 0..1: clamp instead of failing a portable request.
        body["temperature"] = min(max(request.temperature, 0.0), 1.0)
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.user:
        body["metadata"] = {"user_id": request.user}
    if stream if stream is not None else request.stream:
        body["stream"] = True
    return body


def _split_system(messages: list[ChatMessage]) -> tuple[str | list[dict[str, Any]] | None, list[ChatMessage]]:
    """Anthropic takes the system prompt as a top-level field, not as a message."""
    system = [m for m in messages if m.role in ("system", "developer")]
    rest = [m for m in messages if m.role not in ("system", "developer")]
    if not system:
        return None, rest
    if len(system) == 1 and isinstance(system[0].content, list):
        blocks = [
            {"type": "text", "text": p["text"]}
            for p in system[0].content
            if p.get("type") == "text" and p.get("text")
        ]
        return blocks, rest
    return "\n\n".join(m.text() for m in system), rest


def _to_anthropic_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pending_results: list[dict[str, Any]] = []  # consecutive tool messages become one user turn
    for message in messages:
        if message.role == "tool":
            pending_results.append(_to_tool_result(message))
            continue
        if pending_results:
            out.append({"role": "user", "content": pending_results})
            pending_results = []
        if message.role == "user":
            out.append({"role": "user", "content": _to_anthropic_content(message.content)})
        elif message.role == "assistant":
            out.append({"role": "assistant", "content": _to_assistant_content(message)})
        else:
            raise BadRequestError(
                f"message role {message.role!r} is not supported; use tools and role 'tool'"
            )
    if pending_results:
        out.append({"role": "user", "content": pending_results})
    return out


def _to_anthropic_content(content: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):  # Anthropic rejects empty text blocks
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_to_anthropic_image(part.get("image_url")))
        else:
            raise NotSupportedError(
                f"content part {kind!r} cannot be sent to Anthropic (text and images only)"
            )
    return blocks


def _to_anthropic_image(image_url: Any) -> dict[str, Any]:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise BadRequestError("image_url content part without a url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    match = _DATA_URL.match(url)
    if match is None:
        raise BadRequestError("image_url must be an http(s) URL or a base64 data: URL")
    media_type = match["media"].lower()
    if media_type not in IMAGE_MEDIA_TYPES:
        raise NotSupportedError(
            f"image type {media_type} is not accepted by Anthropic ({', '.join(IMAGE_MEDIA_TYPES)})"
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": match["data"]}}


def _to_assistant_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not message.tool_calls:
        return _to_anthropic_content(message.content)
    content = _to_anthropic_content(message.content)
    blocks = ([{"type": "text", "text": content}] if content else []) if isinstance(content, str) else content
    for call in message.tool_calls:
        if not call.id or not call.function.name:
            raise BadRequestError("an assistant tool call needs an id and a function name")
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": _arguments_object(call.function.arguments),
            }
        )
    return blocks


def _arguments_object(arguments: str) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as the object Anthropic's `input` must be."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise BadRequestError(f"tool call arguments are not valid JSON: {arguments[:200]!r}") from None
    if not isinstance(value, dict):
        raise BadRequestError("tool call arguments must be a JSON object")
    return value


def _to_tool_result(message: ChatMessage) -> dict[str, Any]:
    if not message.tool_call_id:
        raise BadRequestError("a tool message needs tool_call_id")
    content = _to_anthropic_content(message.content)
    return {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": content}


def _to_anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function" or not isinstance(tool.get("function"), dict):
        raise NotSupportedError(
            f"tool type {tool.get('type')!r} cannot be sent to Anthropic (function tools only)"
        )
    fn = tool["function"]
    if not fn.get("name"):
        raise BadRequestError("a function tool needs a name")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    out["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _to_anthropic_tool_choice(
    choice: str | dict[str, Any] | None, parallel: bool | None
) -> dict[str, Any] | None:
    if choice is None:
        out: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and isinstance(choice.get("function"), dict)
        and choice["function"].get("name")
    ):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequestError(f"tool_choice {choice!r} is not understood")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# ==========================================================================================
# Requests: Anthropic → canonical (the gateway serving Anthropic clients)
# ==========================================================================================


def from_anthropic_request(body: Any) -> ChatRequest:
    """A canonical request for an Anthropic Messages body; BadRequestError when it is not valid."""
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequestError("max_tokens: Field required (a positive integer)")
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise BadRequestError("messages: Field required (a list)")

    messages: list[ChatMessage] = []
    system = body.get("system")
    if system:
        messages.append(ChatMessage(role="system", content=_system_from_anthropic(system)))
    for i, raw in enumerate(raw_messages):
        messages.extend(_from_anthropic_message(raw, i))

    fields: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    fields["stream"] = bool(body.get("stream", False))
    # top_k is dropped: OpenAI's API refuses it, and any backend may serve this request.
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            fields[key] = body[key]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequestError("stop_sequences must be a list of strings")
        fields["stop"] = stops
    if body.get("tools"):
        if not isinstance(body["tools"], list):
            raise BadRequestError("tools must be a list")
        fields["tools"] = [_tool_from_anthropic(t) for t in body["tools"]]
    if body.get("tool_choice") is not None:
        choice, parallel = _tool_choice_from_anthropic(body["tool_choice"])
        fields["tool_choice"] = choice
        if parallel is False:
            fields["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        fields["user"] = metadata["user_id"]
    try:
        return ChatRequest(**fields)
    except ValueError as e:  # pydantic's ValidationError: a wrong type somewhere
        raise BadRequestError(f"invalid request: {e}") from None


def _system_from_anthropic(system: Any) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    if isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        return [{"type": "text", "text": str(b.get("text", ""))} for b in system]
    raise BadRequestError("system must be a string or a list of text blocks")


def _from_anthropic_message(raw: Any, position: int) -> list[ChatMessage]:
    if not isinstance(raw, dict):
        raise BadRequestError(f"messages.{position}: must be an object")
    role, content = raw.get("role"), raw.get("content")
    if role not in ("user", "assistant"):
        raise BadRequestError(
            f"messages.{position}.role: must be 'user' or 'assistant' (got {role!r}); "
            "the system prompt goes in the top-level `system` field"
        )
    if isinstance(content, str):
        return [ChatMessage(role=role, content=content)]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise BadRequestError(f"messages.{position}.content: must be a string or a list of content blocks")
    if role == "assistant":
        return [_assistant_from_anthropic(content, position)]
    # A user turn: tool results become `tool` messages first (Anthropic puts them first too),
    # then whatever text and images the user added.
    out: list[ChatMessage] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if block.get("type") == "tool_result":
            out.append(_tool_message_from_anthropic(block, position))
        else:
            parts.extend(_part_from_anthropic(block, position))
    if parts or not out:
        out.append(ChatMessage(role="user", content=parts))
    return out


def _part_from_anthropic(block: dict[str, Any], position: int) -> list[dict[str, Any]]:
    kind = block.get("type")
    if kind == "text":
        return [{"type": "text", "text": str(block.get("text", ""))}]
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64" and source.get("data"):
            url = f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
        elif source.get("type") == "url" and source.get("url"):
            url = source["url"]
        else:
            raise NotSupportedError(
                f"messages.{position}: image source {source.get('type')!r} is not supported"
            )
        return [{"type": "image_url", "image_url": {"url": url}}]
    if kind in ("thinking", "redacted_thinking"):
        return []  # the canonical shape has no place for a previous turn's reasoning
    raise NotSupportedError(f"messages.{position}: content block {kind!r} is not supported")


def _assistant_from_anthropic(content: list[dict[str, Any]], position: int) -> ChatMessage:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        if block.get("type") == "tool_use":
            if not block.get("id") or not block.get("name"):
                raise BadRequestError(f"messages.{position}: tool_use blocks need an id and a name")
            calls.append(
                ToolCall(
                    id=block["id"],
                    function=FunctionCall(name=block["name"], arguments=json.dumps(block.get("input") or {})),
                )
            )
        else:
            for part in _part_from_anthropic(block, position):
                if part["type"] != "text":
                    raise BadRequestError(f"messages.{position}: an assistant turn cannot hold images")
                texts.append(part["text"])
    text = "".join(texts)
    return ChatMessage(
        role="assistant", content=text if text or not calls else None, tool_calls=calls or None
    )


def _tool_message_from_anthropic(block: dict[str, Any], position: int) -> ChatMessage:
    if not block.get("tool_use_id"):
        raise BadRequestError(f"messages.{position}: tool_result needs tool_use_id")
    content = block.get("content", "")
    if isinstance(content, list):
        parts: list[dict[str, Any]] = []
        for inner in content:
            if not isinstance(inner, dict):
                raise BadRequestError(f"messages.{position}: tool_result content must be blocks")
            parts.extend(_part_from_anthropic(inner, position))
        return ChatMessage(role="tool", tool_call_id=block["tool_use_id"], content=parts)
    return ChatMessage(role="tool", tool_call_id=block["tool_use_id"], content=str(content or ""))


def _tool_from_anthropic(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or not tool.get("name"):
        raise BadRequestError("each tool needs a name")
    if tool.get("type") not in (None, "custom"):
        raise NotSupportedError(f"server tool {tool.get('type')!r} is not supported; only custom tools are")
    fn: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


def _tool_choice_from_anthropic(choice: Any) -> tuple[str | dict[str, Any], bool | None]:
    if not isinstance(choice, dict):
        raise BadRequestError("tool_choice must be an object")
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise BadRequestError(f"tool_choice type {kind!r} is not understood")


# ==========================================================================================
# Responses
# ==========================================================================================


def from_anthropic_response(body: Any, *, model: str | None = None) -> ChatResponse:
    """The canonical response for an Anthropic message; UpstreamUnavailableError if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise UpstreamUnavailableError(
            f"upstream sent something that is not an Anthropic message: {str(body)[:200]}"
        )
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for block in body["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {})
            calls.append(
                ToolCall(
                    id=block.get("id"), function=FunctionCall(name=block.get("name"), arguments=arguments)
                )
            )
        elif kind == "thinking":
            reasoning.append(block.get("thinking") or "")
    text = "".join(texts)
    extra = {"reasoning_content": "".join(reasoning)} if reasoning else {}  # DeepSeek's name for it
    message = ChatMessage(
        role="assistant", content=text if text or not calls else None, tool_calls=calls or None, **extra
    )
    return ChatResponse(
        id=body.get("id") or f"msg_{uuid.uuid4().hex[:24]}",
        model=body.get("model") or model or "unknown",
        choices=[Choice(message=message, finish_reason=finish_from_stop(body.get("stop_reason")) or "stop")],
        usage=usage_from_anthropic(body.get("usage")),
    )


def usage_from_anthropic(usage: Any, base: Usage | None = None) -> Usage | None:
    """Anthropic's usage → canonical; cached input tokens count as prompt tokens (they are billed)."""
    if not isinstance(usage, dict):
        return base
    prompt = base.prompt_tokens if base else 0
    if usage.get("input_tokens") is not None:
        cache_read = usage.get("cache_read_input_tokens") or 0
        prompt = usage["input_tokens"] + (usage.get("cache_creation_input_tokens") or 0) + cache_read
    completion = usage.get("output_tokens", base.completion_tokens if base else 0) or 0
    return Usage.of(prompt, completion)


def to_anthropic_response(response: ChatResponse, *, model: str | None = None) -> dict[str, Any]:
    """The Anthropic message for a canonical response (the gateway's non-streaming answer)."""
    message = response.message
    content: list[dict[str, Any]] = []
    text = message.text()
    if text:
        content.append({"type": "text", "text": text})
    for call in message.tool_calls or []:
        content.append(
            {
                "type": "tool_use",
                "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": call.function.name or "",
                "input": _lenient_input(call.function.arguments),
            }
        )
    usage = response.usage or Usage()
    return {
        "id": response.id if response.id.startswith("msg_") else f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model or response.model,
        "content": content,
        "stop_reason": stop_from_finish(response.finish_reason),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    }


def _lenient_input(arguments: str) -> dict[str, Any]:
    """A backend model may emit broken tool JSON; hand it on rather than failing the answer."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_value": value}


# ==========================================================================================
# Streams: Anthropic SSE events → canonical chunks (the driver)
# ==========================================================================================


@dataclass
class AnthropicStreamDecoder:
    """Feeds on Anthropic's SSE events one at a time and yields canonical chunks.

    The last chunk (made from `message_delta`) carries finish_reason and usage; `done`
    turns true at `message_stop`, so a stream that ends before it was cut short.
    """

    model: str
    provider: str | None = None
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex[:24]}")
    done: bool = False
    usage: Usage | None = None
    _tool_index: dict[int, int] = field(default_factory=dict)  # Anthropic block index → tool-call index

    def feed(self, event: str, data: str) -> list[ChatChunk]:
        try:
            payload = json.loads(data)
        except ValueError:
            raise UpstreamUnavailableError(
                f"upstream sent a broken stream event: {data[:200]!r}",
                provider=self.provider,
                model=self.model,
            ) from None
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type") or event
        handler = getattr(self, f"_on_{kind}", None)
        return handler(payload) if handler is not None else []  # unknown events: newer API, skip

    def _chunk(
        self, delta: Delta, finish: FinishReason | None = None, usage: Usage | None = None
    ) -> ChatChunk:
        return ChatChunk(
            id=self.id,
            model=self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
        )

    def _on_message_start(self, payload: dict[str, Any]) -> list[ChatChunk]:
        message = payload.get("message") or {}
        self.id = message.get("id") or self.id
        self.model = message.get("model") or self.model
        self.usage = usage_from_anthropic(message.get("usage"))
        return [self._chunk(Delta(role="assistant", content=""))]

    def _on_content_block_start(self, payload: dict[str, Any]) -> list[ChatChunk]:
        block = payload.get("content_block") or {}
        index = payload.get("index", 0)
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk(Delta(content=block["text"]))]
        if block.get("type") == "tool_use":
            position = self._tool_index.setdefault(index, len(self._tool_index))
            arguments = json.dumps(block["input"]) if block.get("input") else ""
            call = ToolCall(
                index=position,
                id=block.get("id"),
                function=FunctionCall(name=block.get("name"), arguments=arguments),
            )
            return [self._chunk(Delta(tool_calls=[call]))]
        return []

    def _on_content_block_delta(self, payload: dict[str, Any]) -> list[ChatChunk]:
        delta = payload.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk(Delta(content=delta["text"]))]
        if kind == "input_json_delta" and delta.get("partial_json"):
            position = self._tool_index.setdefault(payload.get("index", 0), len(self._tool_index))
            call = ToolCall(index=position, function=FunctionCall(arguments=delta["partial_json"]))
            return [self._chunk(Delta(tool_calls=[call]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk(Delta(reasoning_content=delta["thinking"]))]
        return []  # signature and citation deltas have no canonical counterpart

    def _on_message_delta(self, payload: dict[str, Any]) -> list[ChatChunk]:
        # Counts in message_delta are cumulative totals: they replace, not add to, the start's.
        self.usage = usage_from_anthropic(payload.get("usage"), base=self.usage)
        finish = finish_from_stop((payload.get("delta") or {}).get("stop_reason")) or "stop"
        return [self._chunk(Delta(), finish=finish, usage=self.usage)]

    def _on_message_stop(self, payload: dict[str, Any]) -> list[ChatChunk]:
        self.done = True
        return []

    def _on_error(self, payload: dict[str, Any]) -> list[ChatChunk]:
        raise error_from_anthropic(None, payload, provider=self.provider, model=self.model)


# ==========================================================================================
# Streams: canonical chunks → Anthropic SSE bytes (the gateway)
# ==========================================================================================


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@dataclass
class AnthropicStreamEncoder:
    """Turns canonical chunks into the event sequence Anthropic's SDKs expect:

    message_start, then per content block content_block_start / *_delta… / content_block_stop,
    then message_delta (stop_reason, usage) and message_stop. Call `feed` per chunk and
    `finish` once at the end (or `error` to end with an `event: error`).
    """

    model: str
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex[:24]}")
    input_tokens: int = 0
    _started: bool = False
    _finished: bool = False
    _next_block: int = 0
    _open: tuple[str, int] | None = None  # ("text", -1) or ("tool", canonical tool index)
    _tool_blocks: dict[int, int] = field(default_factory=dict)  # canonical tool index → block index
    _finish: str | None = None
    _usage: Usage | None = None

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return sse_event("message_start", {"type": "message_start", "message": message})

    def ping(self) -> bytes:
        """A keep-alive the SDKs skip; the gateway may send it while a model is slow to start."""
        return self.start() + sse_event("ping", {"type": "ping"})

    def feed(self, chunk: ChatChunk) -> bytes:
        out = [self.start()]
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:  # Anthropic has one answer per message
            delta = choice.delta
            if delta.content:
                out.append(self._text(delta.content))
            for call in delta.tool_calls or []:
                out.append(self._tool(call))
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return b"".join(out)

    def finish(self, usage: Usage | None = None) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        usage = usage or self._usage or Usage()
        out = [self.start(), self._close()]
        delta = {"stop_reason": stop_from_finish(self._finish), "stop_sequence": None}
        usage_body = {
            "input_tokens": usage.prompt_tokens or self.input_tokens,
            "output_tokens": usage.completion_tokens,
        }
        out.append(sse_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage_body}))
        out.append(sse_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, exc: BaseException) -> bytes:
        """An `event: error` ending the stream (headers are gone; this is the only way to say it)."""
        self._finished = True
        return sse_event("error", anthropic_error(exc).body)

    # -- blocks -----------------------------------------------------------------------------
    def _open_block(self, kind: tuple[str, int], block: dict[str, Any]) -> bytes:
        closing = self._close()
        self._open = kind
        index = self._next_block
        self._next_block += 1
        if kind[0] == "tool":
            self._tool_blocks[kind[1]] = index
        return closing + sse_event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": self._next_block - 1})

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open != ("text", -1):
            out = self._open_block(("text", -1), {"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        return out + sse_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._next_block - 1, "delta": delta},
        )

    def _tool(self, call: ToolCall) -> bytes:
        position = call.index if call.index is not None else len(self._tool_blocks)
        out = b""
        if position not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": call.function.name or "",
                "input": {},
            }
            out = self._open_block(("tool", position), block)
        if not call.function.arguments:
            return out
        # OpenAI streams tool calls one after another; a late fragment for an earlier call
        # still names that call's block, which the SDKs accumulate by index.
        delta = {"type": "input_json_delta", "partial_json": call.function.arguments}
        body = {"type": "content_block_delta", "index": self._tool_blocks[position], "delta": delta}
        return out + sse_event("content_block_delta", body)


# ==========================================================================================
# Errors
# ==========================================================================================


class AnthropicErrorReply(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def anthropic_error(exc: BaseException) -> AnthropicErrorReply:
    """The HTTP status, Anthropic error JSON and headers to answer an Anthropic client with."""
    if not isinstance(exc, ByenatosError):
        # Never leak a library's internals to the client; the log has the traceback.
        return AnthropicErrorReply(500, _error_body("api_error", "internal error"), {})
    headers: dict[str, str] = {}
    if isinstance(exc, BadRequestError | NotSupportedError):
        kind, status = "invalid_request_error", 400
    elif isinstance(exc, AuthenticationError):
        kind, status = "authentication_error", 401
    elif isinstance(exc, PermissionDeniedError):
        kind, status = "permission_error", 403
    elif isinstance(exc, NotFoundError):
        kind, status = "not_found_error", 404
    elif isinstance(exc, RateLimitError):
        kind, status = "rate_limit_error", 429
        if exc.retry_after is not None:
            headers["retry-after"] = str(max(1, round(exc.retry_after)))
    elif isinstance(exc, OverloadedError):
        kind, status = "overloaded_error", 529
    elif exc.status >= 500:
        kind, status = "api_error", exc.status  # 502/504 stay honest; SDKs retry any 5xx
    else:
        kind, status = "invalid_request_error", exc.status
    return AnthropicErrorReply(status, _error_body(kind, exc.message), headers)


def _error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_from_anthropic(
    status: int | None,
    body: Any,
    *,
    provider: str | None = None,
    model: str | None = None,
    retry_after: float | None = None,
) -> ByenatosError:
    """The typed error for an Anthropic error (an HTTP answer or a mid-stream `event: error`)."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            body = {
                "error": {"message": body.decode("utf-8", "replace") if isinstance(body, bytes) else body}
            }
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or kind)
    if kind == "overloaded_error" or status == 529:
        # Anthropic's own capacity: retryable, and another deployment may well have room.
        return UpstreamUnavailableError(f"overloaded: {message}", provider=provider, model=model)
    return from_http_status(
        status or ERROR_STATUS.get(kind, 500),
        message,
        provider=provider,
        model=model,
        retry_after=retry_after,
    )
