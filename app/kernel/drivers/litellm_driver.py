"""The driver for the long tail of vendors (Gemini, Azure, Bedrock, Mistral, Cohere, Vertex…).

litellm already translates OpenAI-shaped requests into dozens of vendor formats, so this
driver only hands it the canonical request, turns its answers back into canonical types
and its exception classes into ours. One provider = one litellm route:

    ProviderConfig(id="gemini", kind="litellm", api_key=…,
                   options={"litellm_provider": "gemini", "models": ["gemini-2.5-flash"],
                            "litellm_params": {"api_version": "2024-06-01"}})   # optional extras

`import litellm` takes seconds, so it happens on first use only, in a worker thread so
the event loop (and the UI sharing it) keeps running meanwhile.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from app.kernel.canonical import (
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    EmbeddingResult,
    HealthStatus,
    ModelSpec,
    ToolCall,
    Usage,
    model_id,
    new_id,
)
from app.kernel.drivers import httpx_client
from app.kernel.drivers.base import Driver, ProviderConfig
from app.kernel.errors import (
    AuthenticationError,
    BadRequestError,
    ByenatosError,
    ConfigError,
    ContextWindowExceededError,
    ModelNotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    from_http_status,
    parse_retry_after,
)
from app.kernel.loopback import is_loopback
from app.kernel.models import catalog

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0  # seconds; a probe must not hang the health loop

# Only these request fields reach litellm. Everything else litellm would treat as its own
# control arguments (api_base, api_key, metadata, mock_response…) or forward to the vendor
# as is; a client must not be able to redirect our key to another host through the body.
_OPENAI_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "seed",
        "n",
        "user",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "service_tier",
        "web_search_options",
    }
)

_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call", "error"}

# Routes that authenticate without an API key (cloud credentials from the environment,
# or local servers); for the others a missing key is a configuration problem.
_KEYLESS = {
    "vertex_ai",
    "vertex_ai_beta",
    "bedrock",
    "sagemaker",
    "ollama",
    "ollama_chat",
    "hosted_vllm",
    "lm_studio",
    "llamafile",
    "oobabooga",
    "xinference",
    "triton",
    "petals",
}

_litellm: Any = None
_import_lock = threading.Lock()


def _import_litellm() -> Any:
    """Import litellm once, configured to be quiet and to phone nobody."""
    global _litellm
    with _import_lock:
        if _litellm is not None:
            return _litellm
        # without this, importing litellm fetches a price list from the internet
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError as e:
            raise ConfigError(
                f"the litellm package is not installed ({e}); it serves the long-tail vendors"
            ) from e
        litellm.drop_params = True  # vendors reject OpenAI params they lack; drop them instead
        litellm.telemetry = False  # older releases phoned home usage stats; newer ones ignore it
        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout
        litellm.turn_off_message_logging = True  # prompts stay out of litellm's logs
        litellm.success_callback = []
        litellm.failure_callback = []
        litellm.callbacks = []
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _litellm = litellm
        return litellm


async def load_litellm() -> Any:
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(_import_litellm)


class LiteLLMDriver(Driver):
    """One vendor route of litellm (`options["litellm_provider"]`), with optional api_base and key."""

    kind = "litellm"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        route = config.options.get("litellm_provider")
        if not isinstance(route, str) or not route.strip():
            raise ConfigError(
                'a litellm provider needs options["litellm_provider"], e.g. "gemini"', provider=config.id
            )
        self.litellm_provider = route.strip().lower()
        if config.base_url is not None:
            url = urlsplit(config.base_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ConfigError(
                    f"base_url must be an http(s) URL, got {config.base_url!r}", provider=config.id
                )
        extra = config.options.get("litellm_params") or {}
        if not isinstance(extra, dict):
            raise ConfigError("options.litellm_params must be a mapping", provider=config.id)
        self._extra_params: dict[str, Any] = dict(extra)
        models = config.options.get("models") or []
        if not isinstance(models, list) or not all(isinstance(m, str | dict) for m in models):
            raise ConfigError(
                "options.models must be a list of model names or model facts", provider=config.id
            )
        self._configured_models: list[str | dict[str, Any]] = models
        self._route_checked = False

    # -- litellm plumbing ------------------------------------------------------------------
    def litellm_model(self, name: str) -> str:
        """The model string litellm routes on: "gemini/gemini-2.5-flash"."""
        prefix = f"{self.litellm_provider}/"
        return name if name.startswith(prefix) else prefix + name

    async def _ready(self) -> Any:
        litellm = await load_litellm()
        if not self._route_checked:
            known = {str(getattr(p, "value", p)) for p in getattr(litellm, "provider_list", [])}
            if known and self.litellm_provider not in known:
                raise ConfigError(
                    f"litellm has no provider {self.litellm_provider!r}", provider=self.provider_id
                )
            self._route_checked = True
        return litellm

    def _connection(self, name: str) -> dict[str, Any]:
        kw: dict[str, Any] = {
            **self._extra_params,
            "model": self.litellm_model(name),
            "timeout": self.config.timeout,
            "num_retries": 0,  # the router retries, with backoff and fallbacks; no retries underneath
            "max_retries": 0,
        }
        if self.config.base_url:
            kw["api_base"] = self.config.base_url.rstrip("/")
        if self.config.api_key:
            kw["api_key"] = self.config.api_key
        return kw

    def _completion_args(self, request: ChatRequest, model: ModelSpec, *, stream: bool) -> dict[str, Any]:
        body = request.wire_dict(model=model.name)
        kw = self._connection(model.name)
        kw["messages"] = body["messages"]
        kw.update({k: v for k, v in body.items() if k in _OPENAI_PARAMS})
        kw["drop_params"] = True
        if request.tools:
            # litellm routes requests with tools through its MCP gateway check, which imports
            # the optional `mcp` package; we never use that gateway, so skip it.
            kw["_skip_mcp_handler"] = True
        if stream:
            kw["stream"] = True
            kw["stream_options"] = {"include_usage": True}  # a final usage chunk: the kernel meters all
        return kw

    # -- chat ------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        litellm = await self._ready()
        try:
            answer = await litellm.acompletion(**self._completion_args(request, model, stream=False))
        except Exception as e:
            raise self.typed_error(e, model.name) from e
        try:
            return self._response(_as_dict(answer), model.name)
        except (ValidationError, TypeError, AttributeError) as e:
            raise self._malformed("answer", answer, model.name) from e

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[ChatChunk]:
        litellm = await self._ready()
        try:
            upstream = await litellm.acompletion(**self._completion_args(request, model, stream=True))
        except Exception as e:
            raise self.typed_error(e, model.name) from e
        finished = False
        try:
            try:
                async for item in upstream:
                    try:
                        chunk = self._chunk(_as_dict(item), model.name)
                    except (ValidationError, TypeError, AttributeError) as e:
                        raise self._malformed("stream chunk", item, model.name) from e
                    if chunk is None:
                        continue
                    finished = finished or any(c.finish_reason for c in chunk.choices)
                    yield chunk
            except Exception as e:
                raise self.typed_error(e, model.name) from e
            if not finished:
                raise UpstreamUnavailableError(
                    "stream ended before the answer finished", provider=self.provider_id, model=model.name
                )
        finally:
            # Closing early (client gone, task cancelled) must close the vendor connection too.
            aclose = getattr(upstream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as e:  # closing is best effort; the answer is already decided
                    log.debug("closing litellm stream failed: %s", e)

    def _response(self, data: dict[str, Any], name: str) -> ChatResponse:
        raw_choices = data.get("choices") or []
        if not raw_choices:
            raise self._malformed("answer without choices", data, name)
        choices = []
        for i, raw in enumerate(raw_choices):
            message = raw.get("message") or {}
            extra = {k: message[k] for k in ("reasoning_content", "refusal") if message.get(k)}
            choices.append(
                Choice(
                    index=raw.get("index", i),
                    message=ChatMessage(
                        role="assistant",
                        content=message.get("content"),
                        tool_calls=_tool_calls(message.get("tool_calls"), stream=False),
                        **extra,
                    ),
                    finish_reason=_finish(raw.get("finish_reason")),
                )
            )
        return ChatResponse(
            id=data.get("id") or new_id("chatcmpl"),
            created=_created(data),
            model=name,
            choices=choices,
            usage=_usage(data.get("usage")),
        )

    def _chunk(self, data: dict[str, Any], name: str) -> ChatChunk | None:
        choices = []
        for i, raw in enumerate(data.get("choices") or []):
            delta = raw.get("delta") or {}
            extra = (
                {"reasoning_content": delta["reasoning_content"]} if delta.get("reasoning_content") else {}
            )
            choice = ChunkChoice(
                index=raw.get("index", i),
                delta=Delta(
                    role=delta.get("role"),
                    content=delta.get("content") or None,
                    tool_calls=_tool_calls(delta.get("tool_calls"), stream=True),
                    **extra,
                ),
                finish_reason=_finish(raw.get("finish_reason")),
            )
            d = choice.delta
            if d.role or d.content or d.tool_calls or extra or choice.finish_reason:
                choices.append(choice)
        usage = _usage(data.get("usage"))
        if not choices and usage is None:
            return None  # litellm's empty keep-alive deltas carry nothing to pass on
        return ChatChunk(
            id=data.get("id") or "", created=_created(data), model=name, choices=choices, usage=usage
        )

    # -- embeddings ------------------------------------------------------------------------
    async def embed(self, texts: list[str], model: ModelSpec) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult(model=model.name, vectors=[])
        litellm = await self._ready()
        try:
            answer = await litellm.aembedding(input=texts, **self._connection(model.name))
        except Exception as e:
            raise self.typed_error(e, model.name) from e
        data = _as_dict(answer)
        try:
            items = sorted((_as_dict(item) for item in data["data"]), key=lambda item: item.get("index", 0))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as e:
            raise self._malformed("embeddings answer", data, model.name) from e
        if len(vectors) != len(texts):
            raise UpstreamUnavailableError(
                f"asked for {len(texts)} embeddings, got {len(vectors)}",
                provider=self.provider_id,
                model=model.name,
            )
        usage = _usage(data.get("usage"))
        return EmbeddingResult(
            model=model.name, vectors=vectors, usage=Usage.of(usage.prompt_tokens, 0) if usage else Usage()
        )

    # -- models and health -----------------------------------------------------------------
    async def list_models(self) -> list[ModelSpec]:
        """The catalog's models for this route, plus (and overridden by) `options["models"]`.

        litellm has no vendor-neutral listing call, and many of these vendors list nothing
        useful; the catalog knows windows and prices, the options name private deployments.
        """
        specs = {s.name: s for s in catalog.known_specs(self.provider_id, self.litellm_provider)}
        for item in self._configured_models:
            facts = {"name": item} if isinstance(item, str) else dict(item)
            name = facts.get("name") or facts.get("id")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"options.models entry without a name: {item!r}", provider=self.provider_id)
            facts.update(name=name, id=model_id(self.provider_id, name), provider=self.provider_id)
            try:
                spec = ModelSpec.model_validate(facts)
            except ValueError as e:
                raise ConfigError(f"options.models entry {name!r}: {e}", provider=self.provider_id) from e
            specs[name] = catalog.enrich(
                spec, catalog.lookup(self.litellm_model(name), self.litellm_provider)
            )
        return sorted(specs.values(), key=lambda s: s.name)

    async def health(self) -> HealthStatus:
        """Cheap on purpose: a key is present, and a custom api_base answers HTTP. No tokens spent."""
        started = time.perf_counter()
        if importlib.util.find_spec("litellm") is None:
            return HealthStatus(ok=False, detail="the litellm package is not installed")
        if (
            not self.config.api_key
            and self.litellm_provider not in _KEYLESS
            and not _env_key(self.litellm_provider)
        ):
            return HealthStatus(ok=False, detail=f"no API key configured for {self.litellm_provider}")
        if not self.config.base_url:
            return HealthStatus(
                ok=True, detail="key present; the vendor is not probed (that would cost tokens)"
            )
        try:
            async with httpx.AsyncClient(
                timeout=HEALTH_TIMEOUT, trust_env=not is_loopback(self.config.base_url)
            ) as client:
                response = await client.get(self.config.base_url)
        except httpx.HTTPError as e:
            error = httpx_client.transport_error(e, provider=self.provider_id, model=None)
            return HealthStatus(ok=False, latency_ms=_ms_since(started), detail=str(error))
        if response.status_code >= 500:
            return HealthStatus(
                ok=False,
                latency_ms=_ms_since(started),
                detail=f"api_base answers HTTP {response.status_code}",
            )
        # Any other answer (even 404 or 401 at the root) means a server is there and talking.
        return HealthStatus(
            ok=True, latency_ms=_ms_since(started), detail=f"api_base answers HTTP {response.status_code}"
        )

    # -- errors ----------------------------------------------------------------------------
    def typed_error(self, exc: BaseException, model: str | None) -> ByenatosError:
        return litellm_error(exc, provider=self.provider_id, model=model)

    def _malformed(self, what: str, data: Any, model: str) -> UpstreamUnavailableError:
        shown = data if isinstance(data, str | bytes) else json.dumps(data, default=str)
        return UpstreamUnavailableError(
            f"provider {self.provider_id} sent an unexpected {what}: {httpx_client.excerpt(shown)}",
            provider=self.provider_id, model=model,
        )


# -- litellm exceptions → typed errors -----------------------------------------------------


def litellm_error(exc: BaseException, *, provider: str | None, model: str | None) -> ByenatosError:
    """Map any exception litellm raises onto our typed errors, `retryable` set right."""
    if isinstance(exc, ByenatosError):
        return exc
    kw: dict[str, Any] = {"provider": provider, "model": model}
    lib = _litellm
    nested = getattr(exc, "original_exception", None)
    if lib is not None and isinstance(exc, _classes(lib, "MidStreamFallbackError")) and nested is not None:
        # litellm wraps whatever broke a stream; the original says what really happened
        return litellm_error(nested, provider=provider, model=model)
    # What happened on the wire decides over litellm's class where they disagree: litellm
    # classifies some vendors' failures by searching the text, so "Cannot connect to host
    # 127.0.0.1:40365" becomes a 403 BadRequest (the port contains "403"), and a 500 whose
    # body mentions "403" would too.
    transport = _transport_failure(exc)
    if transport is not None:
        if isinstance(transport, httpx.TransportError):
            return httpx_client.transport_error(transport, provider=provider, model=model)
        if isinstance(transport, TimeoutError):
            return UpstreamTimeoutError(f"timed out: {transport}".rstrip(": "), **kw)
        return UpstreamUnavailableError(f"cannot connect: {transport or type(transport).__name__}", **kw)
    status = _vendor_status(exc)
    message = _clean_message(exc)
    if status is not None:  # where it came from: "model overloaded (HTTP 503 from provider x)"
        message = httpx_client.status_message(message, status, provider)
    typed = _by_class(exc, message, lib, kw)
    if not typed.retryable and status is not None and (status == 429 or status >= 500):
        return from_http_status(status, message, retry_after=_retry_after(exc), **kw)
    return typed


def _by_class(exc: BaseException, message: str, lib: Any, kw: dict[str, Any]) -> ByenatosError:
    if isinstance(exc, httpx.HTTPError):
        return from_http_status(getattr(getattr(exc, "response", None), "status_code", 502), message, **kw)
    if lib is None:
        return UpstreamUnavailableError(f"{type(exc).__name__}: {message}", **kw)
    # Order matters: litellm's classes subclass each other (ContextWindowExceeded is a
    # BadRequest, Timeout is an APIConnectionError, MidStreamFallback a ServiceUnavailable).
    if isinstance(exc, _classes(lib, "ContextWindowExceededError")):
        return ContextWindowExceededError(message, **kw)
    if isinstance(exc, _classes(lib, "Timeout")):
        return UpstreamTimeoutError(message or "upstream timed out", **kw)
    if isinstance(exc, _classes(lib, "AuthenticationError")) or _missing_key(message):
        return AuthenticationError(message, **kw)
    if isinstance(exc, _classes(lib, "PermissionDeniedError")):
        return PermissionDeniedError(message, **kw)
    if isinstance(exc, _classes(lib, "NotFoundError")):
        return ModelNotFoundError(message, **kw)
    if isinstance(exc, _classes(lib, "RateLimitError")):
        return RateLimitError(message, retry_after=_retry_after(exc), **kw)
    if isinstance(exc, _classes(lib, "APIConnectionError")):
        # litellm also wraps its own unexpected failures in APIConnectionError (status 500):
        # treat as an unavailable upstream — retryable, and the fallback chain takes over.
        return UpstreamUnavailableError(message or "cannot connect", **kw)
    if isinstance(exc, _classes(lib, "BadRequestError", "UnprocessableEntityError")):
        status = getattr(exc, "status_code", 400)
        return from_http_status(
            status if isinstance(status, int) and 400 <= status < 500 else 400, message, **kw
        )
    if isinstance(exc, _classes(lib, "ServiceUnavailableError", "InternalServerError", "BadGatewayError")):
        return UpstreamUnavailableError(message, **kw)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 600:
        return from_http_status(status, message, retry_after=_retry_after(exc), **kw)
    if isinstance(exc, ValueError | TypeError):
        return BadRequestError(message or type(exc).__name__, **kw)
    return UpstreamUnavailableError(f"{type(exc).__name__}: {message}", **kw)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what caused it, down the chain (litellm re-raises in except blocks)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nested = getattr(current, "original_exception", None)
        context = None if current.__suppress_context__ else current.__context__
        current = current.__cause__ or context or (nested if isinstance(nested, BaseException) else None)


def _transport_failure(exc: BaseException) -> BaseException | None:
    """The refused/dropped/timed-out connection behind an exception, if one caused it."""
    aiohttp = sys.modules.get("aiohttp")  # litellm's default transport; imported by then if used
    kinds: tuple[type[BaseException], ...] = (httpx.TransportError, ConnectionError, TimeoutError)
    if aiohttp is not None:
        kinds += (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)
    return next((e for e in _causes(exc) if isinstance(e, kinds)), None)


def _vendor_status(exc: BaseException) -> int | None:
    """The HTTP status the vendor actually answered with, from the vendor-level exception
    litellm wrapped (its own classes carry the status litellm decided on, so they are skipped)."""
    lib_exceptions = getattr(_litellm, "exceptions", None)
    for cause in _causes(exc):
        if lib_exceptions is not None and type(cause).__module__ == lib_exceptions.__name__:
            continue
        response = getattr(cause, "response", None)
        status = getattr(cause, "status_code", None) or getattr(response, "status_code", None)
        if isinstance(status, int) and 400 <= status < 600:
            return status
    return None


def _classes(lib: Any, *names: str) -> tuple[type[BaseException], ...]:
    # getattr: older litellm releases lack some classes (MidStreamFallbackError, BadGatewayError)
    module = getattr(lib, "exceptions", lib)  # MidStreamFallbackError is not re-exported at the top
    return tuple(c for n in names if isinstance(c := getattr(module, n, getattr(lib, n, None)), type))


_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*|\w+Exception(?:\s+\w+Error)?\s*-\s*|\w+Error:\s*)+")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _clean_message(exc: BaseException) -> str:
    """The vendor's own words, without litellm's prefixes, JSON wrapping or debug tail."""
    text = str(getattr(exc, "message", None) or exc or type(exc).__name__)
    text = text.split("\nTraceback", 1)[0].split("\nReceived Model Group", 1)[0]
    found = _JSON_OBJECT.search(text)
    if found:
        try:
            json.loads(found.group(0))
        except ValueError:
            try:  # litellm often shows the vendor's body as a Python dict: {'error': {'message': …}}
                data = ast.literal_eval(found.group(0))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                data = None
            if isinstance(data, dict | list):
                return httpx_client.error_message(json.dumps(data, default=str), text)
        else:
            return httpx_client.error_message(found.group(0), text)
    return _PREFIX.sub("", text).strip()[:500] or type(exc).__name__


def _missing_key(message: str) -> bool:
    lowered = message.lower()
    return "missing" in lowered and ("api key" in lowered or "api_key" in lowered)


def _retry_after(exc: BaseException) -> float | None:
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if headers is not None:
            try:
                value = headers.get("retry-after")
            except AttributeError:
                continue
            if value:
                return parse_retry_after(str(value))
    return None


# -- shape helpers -------------------------------------------------------------------------


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        try:
            return dump(warnings=False)
        except TypeError:
            return dump()
    return dict(getattr(obj, "__dict__", {}))


def _tool_calls(raw: Any, *, stream: bool) -> list[ToolCall] | None:
    if not raw:
        return None
    calls = []
    for i, item in enumerate(raw):
        call = _as_dict(item)
        function = _as_dict(call.get("function") or {})
        calls.append(
            ToolCall(
                id=call.get("id") or (None if stream else new_id("call")),
                function={"name": function.get("name"), "arguments": function.get("arguments") or ""},
                index=call.get("index", i) if stream else None,
            )
        )
    return calls


def _finish(value: Any) -> Any:
    if value is None:
        return None
    value = str(value)
    return value if value in _FINISH_REASONS else "stop"


def _usage(raw: Any) -> Usage | None:
    if not raw:
        return None
    data = _as_dict(raw)
    prompt, completion = int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(data.get("total_tokens") or prompt + completion),
    )


def _created(data: dict[str, Any]) -> int:
    created = data.get("created")
    return int(created) if isinstance(created, int | float) and created > 0 else int(time.time())


def _env_key(route: str) -> bool:
    # litellm reads <VENDOR>_API_KEY itself when no key is passed (GEMINI_API_KEY, MISTRAL_API_KEY…)
    return bool(os.environ.get(f"{route.upper()}_API_KEY"))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
