"""Canonical (OpenAI Chat shape) ⇄ Ollama's native /api/chat format, both ways.

Forward (the Ollama driver): canonical request → /api/chat body; /api/chat answer and
NDJSON stream objects → canonical response and chunks; Ollama's `{"error": ...}` → typed errors.
Reverse (the gateway serving Ollama clients): /api/chat body → canonical request;
canonical response and chunks → Ollama answer and stream objects.

Where the formats differ:
- images: OpenAI `image_url` parts with data: URLs ⇄ Ollama's `images` list of bare base64;
- tool calls: Ollama's `arguments` is a JSON object, OpenAI's a JSON string; Ollama calls
  carry no id, so ids are synthesised from a hash (stable: the same call in the same place
  always gets the same id, so a resent history keeps its tool results attached);
- tool results: Ollama names the tool (`tool_name`), OpenAI points at the call (`tool_call_id`);
- sampling options live in Ollama's `options`; `max_tokens` is `num_predict`;
- `response_format` json_object → `format: "json"`, json_schema → `format: <the schema>`;
- Ollama has no "tool_calls" finish reason: it says "stop" and the calls tell the story.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

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
    ToolCall,
    Usage,
    new_id,
)
from app.kernel.errors import (
    BadRequestError,
    ByenatosError,
    ContextWindowExceededError,
    ModelNotFoundError,
    NotSupportedError,
    UpstreamUnavailableError,
    from_http_status,
    looks_like_context_overflow,
)

# Options Ollama understands (api.Options + api.Runner) that an OpenAI-shaped request may
# carry as extra top-level fields (several OpenAI clients send top_k, repeat_penalty…).
OLLAMA_OPTION_NAMES = frozenset(
    "num_keep seed num_predict top_k top_p min_p typical_p repeat_last_n temperature repeat_penalty"
    " presence_penalty frequency_penalty mirostat mirostat_tau mirostat_eta penalize_newline stop"
    " numa num_ctx num_batch num_gpu main_gpu low_vram use_mmap use_mlock num_thread".split()
)
# Canonical fields that map onto an option of the same name.
_SAME_NAME_OPTIONS = ("temperature", "top_p", "seed")
# Options the reverse direction lifts back into canonical fields of the same name.
_LIFTED_OPTIONS = ("temperature", "top_p", "seed", "stop", "num_predict")
_OLLAMA_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
}


# -- helpers ---------------------------------------------------------------------------------
def synth_tool_call_id(scope: str, index: int, name: str | None, arguments: Any) -> str:
    """A deterministic id for an Ollama tool call: same scope, place and call → same id."""
    key = json.dumps(
        [scope, index, name or "", arguments], sort_keys=True, separators=(",", ":"), default=str
    )
    return "call_" + hashlib.sha256(key.encode()).hexdigest()[:24]


def ollama_timestamp(when: float | None = None) -> str:
    """Ollama's `created_at`: RFC 3339 with fractional seconds, in UTC."""
    moment = datetime.fromtimestamp(time.time() if when is None else when, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")


def _epoch(created_at: Any) -> int:
    if isinstance(created_at, str):
        try:
            return int(datetime.fromisoformat(created_at).timestamp())
        except ValueError:
            pass  # a format we do not know is not worth failing the answer over
    return int(time.time())


def _arguments_object(raw: str, *, name: str | None) -> dict[str, Any]:
    """OpenAI's JSON-string arguments → the object Ollama wants; bad JSON is the caller's error."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadRequestError(f"arguments of tool call {name!r} are not valid JSON: {raw[:200]!r}") from None
    if not isinstance(value, dict):
        raise BadRequestError(f"arguments of tool call {name!r} must be a JSON object for Ollama")
    return value


def _arguments_string(value: Any) -> str:
    """Ollama's object arguments → OpenAI's JSON string (some models already send a string)."""
    if isinstance(value, str):
        return value
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def _sniff_mime(b64: str) -> str:
    """Ollama sends bare base64; a data: URL needs a media type, so read the magic bytes."""
    try:
        head = base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4), validate=False)
    except (binascii.Error, ValueError):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime
    return "image/png"


_DATA_URL_RE = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*),(?P<data>.*)$", re.DOTALL
)


def _image_base64(part: dict[str, Any]) -> str:
    """An OpenAI image_url part → the bare base64 Ollama takes. Remote URLs are refused:
    Ollama cannot fetch them, and fetching on the caller's behalf is not a translator's job."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise BadRequestError("image_url part without a url")
    match = _DATA_URL_RE.match(url)
    if match is None:
        raise NotSupportedError(
            "Ollama takes images inline only: send a data: URL (base64), not a remote URL"
        )
    if ";base64" not in (match.group("params") or ""):
        raise BadRequestError("image data: URL must be base64-encoded")
    data = match.group("data").strip()
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("image data: URL holds invalid base64") from None
    return data


# -- canonical → Ollama request (the driver) ---------------------------------------------------
def to_ollama_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Canonical messages → Ollama's. Tool results get `tool_name` from the call they answer."""
    call_names: dict[str, str] = {}  # tool_call_id → function name, from earlier assistant turns
    out: list[dict[str, Any]] = []
    for message in messages:
        role = _OLLAMA_ROLES[message.role]
        item: dict[str, Any] = {"role": role, "content": message.text()}
        if isinstance(message.content, list):
            images: list[str] = []
            for part in message.content:
                kind = part.get("type")
                if kind == "image_url":
                    images.append(_image_base64(part))
                elif kind != "text":
                    raise NotSupportedError(f"Ollama takes text and images only, not {kind!r} content parts")
            if images:
                item["images"] = images
        thinking = (message.model_extra or {}).get("reasoning_content")
        if role == "assistant" and isinstance(thinking, str) and thinking:
            item["thinking"] = thinking
        if message.tool_calls:
            calls = []
            for call in message.tool_calls:
                name = call.function.name or ""
                if call.id:
                    call_names[call.id] = name
                calls.append(
                    {
                        "function": {
                            "name": name,
                            "arguments": _arguments_object(call.function.arguments, name=name),
                        }
                    }
                )
            item["tool_calls"] = calls
        if role == "tool":
            tool_name = message.name or call_names.get(message.tool_call_id or "")
            if tool_name:
                item["tool_name"] = tool_name
        out.append(item)
    return out


def _ollama_format(response_format: dict[str, Any] | None) -> str | dict[str, Any] | None:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequestError("response_format json_schema needs a `json_schema.schema` object")
        return schema
    if kind in (None, "text"):
        return None
    raise NotSupportedError(f"Ollama does not support response_format type {kind!r}")


def to_ollama_request(
    request: ChatRequest,
    *,
    model: str | None = None,
    stream: bool,
    num_ctx: int | None = None,
    keep_alive: str | int | float | None = None,
) -> dict[str, Any]:
    """The /api/chat body for a canonical request.

    `num_ctx` is the context window the driver wants the model run with; an explicit
    `options.num_ctx` from the caller wins. `keep_alive` from the request itself wins too.
    """
    if request.n is not None and request.n > 1:
        raise NotSupportedError("Ollama returns one choice per request (n > 1)")
    extra = dict(request.model_extra or {})
    options: dict[str, Any] = {}
    native = extra.get("options")
    if isinstance(native, dict):
        options.update(native)  # an Ollama client's own options, through the gateway
    options.update({k: v for k, v in extra.items() if k in OLLAMA_OPTION_NAMES and v is not None})
    for name in _SAME_NAME_OPTIONS:
        value = getattr(request, name)
        if value is not None:
            options[name] = value
    if request.stop is not None:
        options["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.output_limit() is not None:
        options["num_predict"] = request.output_limit()
    if num_ctx is not None:
        options.setdefault("num_ctx", num_ctx)

    body: dict[str, Any] = {
        "model": model or request.model,
        "messages": to_ollama_messages(request.messages),
        "stream": stream,
    }
    # tool_choice "none" has no Ollama spelling; not offering the tools is the same thing.
    if request.tools and request.tool_choice != "none":
        body["tools"] = request.tools
    fmt = _ollama_format(request.response_format)
    if fmt is not None:
        body["format"] = fmt
    if options:
        body["options"] = options
    keep = extra.get("keep_alive", keep_alive)
    if keep is not None:
        body["keep_alive"] = keep
    if "think" in extra:
        body["think"] = extra["think"]
    return body


# -- Ollama answers → canonical (the driver) --------------------------------------------------
_NOT_FOUND_RE = re.compile(r"model\s+[\"']?(?P<name>[^\"']+?)[\"']?\s+not found", re.IGNORECASE)


def error_from_ollama(
    message: str, *, status: int | None = None, provider: str | None = None, model: str | None = None
) -> ByenatosError:
    """Ollama's `{"error": "..."}` (with its HTTP status, or none inside a stream) → a typed error."""
    message = message or "Ollama reported an error"
    kw = {"provider": provider, "model": model}
    if _NOT_FOUND_RE.search(message):
        return ModelNotFoundError(message, **kw)
    if "does not support" in message:  # "llama2 does not support tools", "... embeddings"
        return NotSupportedError(message, **kw)
    if status is not None:
        return from_http_status(status, message, **kw)
    if looks_like_context_overflow(message):
        return ContextWindowExceededError(message, **kw)
    return UpstreamUnavailableError(message, **kw)


def _finish_reason(done_reason: Any, has_tool_calls: bool) -> FinishReason:
    if has_tool_calls:
        return "tool_calls"
    return "length" if done_reason == "length" else "stop"


def _usage(data: dict[str, Any]) -> Usage:
    return Usage.of(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))


def _canonical_tool_calls(calls: list[dict[str, Any]], *, scope: str, first_index: int = 0) -> list[ToolCall]:
    out = []
    for offset, call in enumerate(calls):
        index = first_index + offset
        function = call.get("function") or {}
        name = function.get("name")
        arguments = function.get("arguments")
        out.append(
            ToolCall(
                id=call.get("id") or synth_tool_call_id(scope, index, name, arguments),
                function=FunctionCall(name=name, arguments=_arguments_string(arguments)),
            )
        )
    return out


def from_ollama_response(
    data: dict[str, Any], *, model: str | None = None, provider: str | None = None
) -> ChatResponse:
    """A /api/chat answer (stream false) → canonical response."""
    if not isinstance(data, dict):
        raise UpstreamUnavailableError(
            "Ollama sent an answer that is not a JSON object", provider=provider, model=model
        )
    if data.get("error"):
        raise error_from_ollama(str(data["error"]), provider=provider, model=model)
    raw = data.get("message")
    if not isinstance(raw, dict):
        raise UpstreamUnavailableError("Ollama's answer has no message", provider=provider, model=model)
    response_id = new_id("chatcmpl")
    calls = _canonical_tool_calls(raw.get("tool_calls") or [], scope=response_id)
    content = raw.get("content") or ""
    message = ChatMessage(
        role="assistant", content=content if content or not calls else None, tool_calls=calls or None
    )
    if raw.get("thinking"):
        message.reasoning_content = raw["thinking"]  # type: ignore[attr-defined]  # extra="allow"
    return ChatResponse(
        id=response_id,
        created=_epoch(data.get("created_at")),
        model=data.get("model") or model or "",
        choices=[Choice(message=message, finish_reason=_finish_reason(data.get("done_reason"), bool(calls)))],
        usage=_usage(data),
    )


class OllamaStreamReader:
    """Turns Ollama's NDJSON stream objects into canonical chunks, one object at a time.

    Keeps what a stream needs across objects: one chunk id, the role sent once, tool-call
    indices that keep counting, and whether any tool call came (Ollama's final "stop" then
    means "tool_calls").
    """

    def __init__(self, *, model: str, provider: str | None = None) -> None:
        self.id = new_id("chatcmpl")
        self.model = model
        self.provider = provider
        self.done = False
        self._role_sent = False
        self._tool_calls = 0

    def read(self, obj: Any) -> ChatChunk | None:
        """The chunk for one stream object, or None when the object carries nothing new."""
        if not isinstance(obj, dict):
            raise UpstreamUnavailableError(
                "Ollama sent a stream line that is not a JSON object",
                provider=self.provider,
                model=self.model,
            )
        if obj.get("error"):
            raise error_from_ollama(str(obj["error"]), provider=self.provider, model=self.model)
        raw = obj.get("message") or {}
        delta = Delta()
        if not self._role_sent:
            delta.role = "assistant"
            self._role_sent = True
        if raw.get("content"):
            delta.content = raw["content"]
        if raw.get("thinking"):
            delta.reasoning_content = raw["thinking"]  # type: ignore[attr-defined]  # extra="allow"
        if raw.get("tool_calls"):
            calls = _canonical_tool_calls(raw["tool_calls"], scope=self.id, first_index=self._tool_calls)
            for offset, call in enumerate(calls):
                call.index = self._tool_calls + offset
            self._tool_calls += len(calls)
            delta.tool_calls = calls
        finish: FinishReason | None = None
        usage: Usage | None = None
        if obj.get("done"):
            self.done = True
            finish = _finish_reason(obj.get("done_reason"), self._tool_calls > 0)
            usage = _usage(obj)
        elif (
            delta.role is None
            and delta.content is None
            and delta.tool_calls is None
            and not raw.get("thinking")
        ):
            return None
        return ChatChunk(
            id=self.id,
            created=_epoch(obj.get("created_at")),
            model=obj.get("model") or self.model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            usage=usage,
        )


# -- Ollama request → canonical (the gateway serving Ollama clients) --------------------------
def from_ollama_messages(messages: list[dict[str, Any]]) -> list[ChatMessage]:
    """Ollama messages → canonical. Tool results are tied to the call they answer by name."""
    out: list[ChatMessage] = []
    pending: list[ToolCall] = []  # calls of the latest assistant turn not yet answered
    for position, raw in enumerate(messages):
        if not isinstance(raw, dict) or raw.get("role") not in ("system", "user", "assistant", "tool"):
            raise BadRequestError(f"message {position} needs a role of system, user, assistant or tool")
        role = raw["role"]
        text = raw.get("content") or ""
        if not isinstance(text, str):
            raise BadRequestError(f"message {position}: Ollama content must be a string")
        images = raw.get("images") or []
        content: str | list[dict[str, Any]] | None = text
        if images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            for image in images:
                if not isinstance(image, str):
                    raise BadRequestError(f"message {position}: images must be base64 strings")
                parts.append(
                    {"type": "image_url", "image_url": {"url": f"data:{_sniff_mime(image)};base64,{image}"}}
                )
            content = parts
        message = ChatMessage(role=role, content=content)
        if raw.get("thinking"):
            message.reasoning_content = raw["thinking"]  # type: ignore[attr-defined]
        if raw.get("tool_calls"):
            message.tool_calls = _canonical_tool_calls(raw["tool_calls"], scope=f"msg{position}")
            if not text:
                message.content = None
            pending = list(message.tool_calls)
        if role == "tool":
            name = raw.get("tool_name") or raw.get("name")
            if name:
                match = next((c for c in pending if c.function.name == name), None)
            else:
                match = pending[0] if pending else None
            if match is not None:
                pending.remove(match)
                name = name or match.function.name
            message.name = name
            message.tool_call_id = raw.get("tool_call_id") or (
                match.id if match is not None else synth_tool_call_id(f"msg{position}", 0, name, None)
            )
        out.append(message)
    return out


def _response_format(fmt: Any) -> dict[str, Any] | None:
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    raise BadRequestError(f'format must be "json" or a JSON schema object, not {fmt!r}')


def from_ollama_request(body: Any) -> ChatRequest:
    """A /api/chat body from an Ollama client → canonical request (stream defaults to true)."""
    if not isinstance(body, dict):
        raise BadRequestError("request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError("model is required")
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise BadRequestError("messages must be a list")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequestError("options must be an object")
    options = dict(options)
    fields: dict[str, Any] = {
        "model": model,
        "messages": from_ollama_messages(messages),
        "stream": body.get("stream", True) is not False,
        "tools": body.get("tools") or None,
        "response_format": _response_format(body.get("format")),
    }
    lifted = {name: options.pop(name) for name in _LIFTED_OPTIONS if options.get(name) is not None}
    for name in ("temperature", "top_p", "seed", "stop"):
        if name in lifted:
            fields[name] = lifted[name]
    if "num_predict" in lifted and lifted["num_predict"] >= 0:  # -1 means "no limit" in Ollama
        fields["max_tokens"] = lifted["num_predict"]
    if options:
        fields["options"] = options  # the rest rides along as an extra; the driver passes it on
    for name in ("keep_alive", "think"):
        if name in body:
            fields[name] = body[name]
    try:
        return ChatRequest(**fields)
    except ValueError as e:  # pydantic's ValidationError: a malformed field from the client
        raise BadRequestError(f"invalid Ollama chat request: {e}") from None


# -- canonical → Ollama answers (the gateway serving Ollama clients) ---------------------------
def _ollama_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [
        {
            "function": {
                "index": i,
                "name": c.function.name or "",
                "arguments": _arguments_object(c.function.arguments, name=c.function.name),
            }
        }
        for i, c in enumerate(calls)
    ]


def _done_reason(finish: FinishReason | None) -> str:
    return "length" if finish == "length" else "stop"


def to_ollama_response(response: ChatResponse) -> dict[str, Any]:
    """A canonical response → Ollama's /api/chat answer (stream false)."""
    message = response.message
    out_message: dict[str, Any] = {"role": "assistant", "content": message.text()}
    thinking = (message.model_extra or {}).get("reasoning_content")
    if thinking:
        out_message["thinking"] = thinking
    if message.tool_calls:
        out_message["tool_calls"] = _ollama_tool_calls(message.tool_calls)
    usage = response.usage or Usage()
    return {
        "model": response.model,
        "created_at": ollama_timestamp(response.created),
        "message": out_message,
        "done": True,
        "done_reason": _done_reason(response.finish_reason),
        "prompt_eval_count": usage.prompt_tokens,
        "eval_count": usage.completion_tokens,
    }


class OllamaStreamWriter:
    """Turns canonical chunks into Ollama stream objects.

    Text goes out as it comes. Tool calls arrive as OpenAI deltas (argument fragments by
    index) but Ollama sends each call whole, so they are gathered and sent, with the final
    `done` object, by `finish()` — which the caller invokes when the canonical stream ends
    (usage may come in a chunk after the finish reason).
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.finish_reason: FinishReason | None = None
        self.usage: Usage | None = None
        self._calls: dict[int, dict[str, str]] = {}

    def _object(self, message: dict[str, Any], *, done: bool) -> dict[str, Any]:
        return {"model": self.model, "created_at": ollama_timestamp(), "message": message, "done": done}

    def write(self, chunk: ChatChunk) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # Ollama has one choice; n > 1 is refused on the way in
            delta = choice.delta
            message: dict[str, Any] = {"role": "assistant", "content": delta.content or ""}
            thinking = (delta.model_extra or {}).get("reasoning_content")
            if thinking:
                message["thinking"] = thinking
            if delta.content or thinking:
                out.append(self._object(message, done=False))
            for position, call in enumerate(delta.tool_calls or []):
                slot = self._calls.setdefault(
                    call.index if call.index is not None else position, {"name": "", "arguments": ""}
                )
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        return out

    def finish(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._calls:
            calls = [
                {
                    "function": {
                        "index": i,
                        "name": c["name"],
                        "arguments": _arguments_object(c["arguments"], name=c["name"]),
                    }
                }
                for i, (_, c) in enumerate(sorted(self._calls.items()))
            ]
            out.append(self._object({"role": "assistant", "content": "", "tool_calls": calls}, done=False))
        final = self._object({"role": "assistant", "content": ""}, done=True)
        final["done_reason"] = _done_reason(self.finish_reason)
        usage = self.usage or Usage()
        final["prompt_eval_count"] = usage.prompt_tokens
        final["eval_count"] = usage.completion_tokens
        out.append(final)
        return out


def ollama_error_body(error: ByenatosError | str) -> dict[str, str]:
    """The error JSON Ollama clients expect: `{"error": "<message>"}`."""
    return {"error": error if isinstance(error, str) else error.message}
