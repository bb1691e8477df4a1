"""The driver for every server that speaks the OpenAI API.

OpenAI itself, DeepSeek, Kimi/Moonshot, Groq, OpenRouter, Mistral, vLLM, LM Studio,
llama.cpp's server and Ollama's /v1 all accept the same Chat Completions JSON, so the
canonical request goes out as is (with the provider's model name) and the answer comes
back nearly as is. `chat_raw`/`stream_raw` skip even that for the gateway's fast path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import ValidationError

from app.kernel import sse
from app.kernel.canonical import (
    Capabilities,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResult,
    HealthStatus,
    ModelSpec,
    Repository,
    Usage,
    model_id,
    new_id,
)
from app.kernel.drivers import http1, httpx_client
from app.kernel.drivers.base import Driver, ProviderConfig, prompted_tools
from app.kernel.errors import (
    ByenatosError,
    ConfigError,
    ContextWindowExceededError,
    EmptyAnswerError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UpstreamUnreachableError,
    from_http_status,
    parse_retry_after,
)
from app.kernel.loopback import is_loopback
from app.kernel.streams import answer_chunks, answer_events, looks_like_json, wants_usage

HEALTH_TIMEOUT = 2.0  # seconds; a probe must not hang the health loop
DEFAULT_CONTEXT_WINDOW = ModelSpec.model_fields["context_window"].default  # the registry enriches it later

# Servers disagree on where they put the window size in /models entries.
_CONTEXT_FIELDS = ("context_length", "max_model_len", "context_window", "max_context_length")

# Finish reasons some servers send outside OpenAI's set, mapped onto it.
_FINISH_ALIASES = {
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "abort": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
}
_FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call", "error"}

# OpenAI's error `code`/`type` strings → the HTTP status they stand for (errors sent in a
# 200 body or inside a stream carry no status of their own).
_ERROR_STATUS = {
    "invalid_api_key": 401,
    "authentication_error": 401,
    "permission_error": 403,
    "model_not_found": 404,
    "not_found_error": 404,
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "requests": 429,
    "tokens": 429,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "server_error": 500,
    "api_error": 500,
    "internal_error": 500,
    "overloaded_error": 503,
    "timeout": 504,
}

class OpenAICompatDriver(Driver):
    """One provider reachable at `config.base_url` (the API root, `/v1` included)."""

    kind = "openai"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        if not config.base_url:
            raise ConfigError("an OpenAI-compatible provider needs a base_url", provider=config.id)
        url = urlsplit(config.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"base_url must be an http(s) URL, got {config.base_url!r}", provider=config.id)
        extra = config.options.get("headers") or {}
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
        ):
            raise ConfigError("options.headers must map header names to string values", provider=config.id)
        self._headers: dict[str, str] = {}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"
        self._headers.update(extra)
        self._local = is_loopback(config.base_url)
        self._client: httpx.AsyncClient | None = None
        self._fast = _FastTransport(config, self._headers, local=self._local)

    @property
    def client(self) -> httpx.AsyncClient:
        # Built on first use, so constructing a driver (synchronous, maybe outside a loop) opens nothing.
        if self._client is None:
            self._client = httpx_client.make_client(self.config, headers=self._headers)
        return self._client

    async def aclose(self) -> None:
        await self._fast.aclose()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    # -- chat ------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        body = request.wire_dict(model=model.name)
        body["stream"] = False
        body.pop("stream_options", None)  # OpenAI rejects it on non-streaming requests
        data = await self.chat_raw(body)
        if not data.get("choices"):
            raise self._malformed("answer without choices", data, model.name)
        _normalise_choices(data, "message")
        data.pop("object", None)  # some servers spell it differently; the canonical type fills it in
        data.setdefault("model", model.name)
        try:
            return ChatResponse.model_validate(data)
        except ValidationError as e:
            raise self._malformed("answer", data, model.name) from e

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[ChatChunk]:
        body = request.wire_dict(model=model.name)
        body["stream"] = True
        if self.config.options.get("stream_usage") is False:
            body.pop("stream_options", None)
        else:  # ask for a final usage chunk: the kernel meters every request
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        finished = started = False
        async with httpx_client.open_stream(
            self.client, "/chat/completions", body, provider=self.provider_id, model=model.name
        ) as response:
            if "json" in response.headers.get("content-type", ""):
                # The server ignored `stream` and sent the whole answer (some do): it is served
                # as the stream that was asked for, one chunk holding all of it.
                try:
                    raw = await response.aread()
                except httpx.HTTPError as e:
                    raise httpx_client.transport_error(e, provider=self.provider_id, model=model.name) from e
                answer = self._checked(_json_answer(200, {}, raw, provider=self.provider_id, model=model.name),
                                       model.name)
                for obj in answer_chunks(answer, include_usage=True):
                    yield self._chunk(obj, model.name)
                return
            async with aclosing(httpx_client.iter_sse(response, provider=self.provider_id, model=model.name)) as events:
                async for event, data in events:
                    if data.strip() == "[DONE]":
                        return
                    obj = self._event_json(event, data, model.name)
                    if not obj.get("choices") and not obj.get("usage"):
                        continue  # keep-alive or filter-report chunks (Azure) carry nothing to pass on
                    chunk = self._chunk(obj, model.name)
                    finished = finished or any(c.finish_reason for c in chunk.choices)
                    started = True
                    yield chunk
        if not started:  # not one event: an empty answer, retried or failed over by the router
            raise EmptyAnswerError("the server's stream held no event", provider=self.provider_id, model=model.name)
        if not finished:
            # A clean end of body without [DONE] or a finish reason: the answer was cut short.
            raise UpstreamUnavailableError(
                "stream ended before the answer finished", provider=self.provider_id, model=model.name
            )

    def _chunk(self, obj: dict[str, Any], name: str) -> ChatChunk:
        _normalise_choices(obj, "delta")
        obj.pop("object", None)
        obj.setdefault("id", "")
        obj.setdefault("model", name)
        try:
            return ChatChunk.model_validate(obj)
        except ValidationError as e:
            raise self._malformed("stream chunk", obj, name) from e

    # -- raw pass-through (gateway fast path) ----------------------------------------------
    async def chat_raw(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST the body as is; return the upstream JSON as is. `body["model"]` is the upstream name."""
        return await self.post_raw("/chat/completions", body)

    def stream_raw(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Yield the upstream SSE bytes untouched, in batches of whole events (see app.kernel.sse)."""
        return self.stream_post_raw("/chat/completions", body)

    async def post_raw(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Any OpenAI POST endpoint (`/chat/completions`, `/completions`) as JSON in, JSON out."""
        name = body.get("model")
        return self._checked(await self._fast.post_json(path, body, provider=self.provider_id, model=name), name)

    def _checked(self, data: Any, name: str | None) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self._malformed("answer", data, name)
        if data.get("error") is not None and "choices" not in data:
            # Some servers (OpenRouter among them) report failures in a 200 body.
            raise self._error_from_object(data["error"], name)
        return data

    def passthrough_client(self) -> http1.Http1Client | None:
        """Our HTTP/1.1 client, when `chat_raw` is a plain POST of the body through it: the
        gateway's pass-through lane then makes that POST itself, in callbacks, and reads the
        answer with `passthrough_answer`. None for https and proxied hosts, and for subclasses
        that change what `chat_raw` does."""
        cls = type(self)
        if cls.chat_raw is not OpenAICompatDriver.chat_raw or cls.post_raw is not OpenAICompatDriver.post_raw:
            return None
        return self._fast.http1

    def passthrough_answer(self, status: int, headers: Any, raw: bytes, name: str | None) -> dict[str, Any]:
        """What `chat_raw` returns for an answer read off the wire, or the error it raises."""
        if status < 400:  # the usual answer, checked flat: it is on the way to the client
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = None  # reported below, as _json_answer words it
            if type(data) is dict and (data.get("error") is None or "choices" in data):
                return data
        return self._checked(_json_answer(status, headers, raw, provider=self.provider_id, model=name), name)

    def passthrough_stream_answer(self, raw: bytes, wire: dict[str, Any]) -> bytes:
        """A whole JSON answer that the server sent to the streaming request `wire` (servers
        that ignore `stream` do) as the SSE batch the client asked for: one chunk holding all
        of it, the usage chunk if `wire` asked for it, `data: [DONE]`. Raises the typed error
        for invalid JSON or an error object, as `chat_raw` would."""
        name = wire.get("model")
        answer = self._checked(_json_answer(200, {}, raw, provider=self.provider_id, model=name), name)
        return answer_events(answer, include_usage=wants_usage(wire))

    def stream_post_raw(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        if not body.get("stream"):
            body = {**body, "stream": True}
        if self._fast.http1 is not None:
            return _Http1EventStream(self._fast.http1, path, body, provider=self.provider_id,
                                     whole=self.passthrough_stream_answer)
        return self._stream_post_aiohttp(path, body)

    async def _stream_post_aiohttp(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        name = body.get("model")
        async with self._fast.open_stream(path, body, provider=self.provider_id, model=name) as pieces:
            buffer = b""
            try:
                async for piece in pieces:
                    buffer += piece
                    # Every complete event that arrived, as one batch (see app.kernel.sse).
                    end = sse.complete_prefix(buffer)
                    if end:
                        yield buffer[:end]
                        buffer = buffer[end:]
            except (TimeoutError, OSError, _aiohttp().ClientError, http1.TransportError) as e:
                raise pass_through_error(e, provider=self.provider_id, model=name) from e
            if looks_like_json(buffer):
                yield self.passthrough_stream_answer(buffer, body)  # the whole answer as plain JSON
            elif buffer.strip():
                yield buffer  # a last event without its blank line; pass it on rather than lose it

    # -- embeddings ------------------------------------------------------------------------
    async def embed(self, texts: list[str], model: ModelSpec) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult(model=model.name, vectors=[])
        data = await httpx_client.post_json(
            self.client,
            "/embeddings",
            {"model": model.name, "input": texts},
            provider=self.provider_id,
            model=model.name,
        )
        try:
            items = sorted(data["data"], key=lambda item: item.get("index", 0))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise self._malformed("embeddings answer", data, model.name) from e
        if len(vectors) != len(texts):
            raise UpstreamUnavailableError(
                f"asked for {len(texts)} embeddings, got {len(vectors)}",
                provider=self.provider_id,
                model=model.name,
            )
        usage = data.get("usage") or {}
        prompt = usage.get("prompt_tokens", 0) if isinstance(usage, dict) else 0
        return EmbeddingResult(
            model=data.get("model") or model.name, vectors=vectors, usage=Usage.of(int(prompt or 0), 0)
        )

    # -- models and health -----------------------------------------------------------------
    async def list_models(self) -> list[ModelSpec]:
        data = await httpx_client.get_json(self.client, "/models", provider=self.provider_id)
        entries = data.get("data") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise self._malformed("model list", data, None)
        return [self._spec(entry) for entry in entries if isinstance(entry, dict) and entry.get("id")]

    async def health(self) -> HealthStatus:
        started = time.perf_counter()
        try:
            await httpx_client.get_json(self.client, "/models", provider=self.provider_id, timeout=HEALTH_TIMEOUT)
        except Exception as e:  # a probe reports, it never raises
            return HealthStatus(ok=False, latency_ms=_ms_since(started), detail=str(e) or type(e).__name__)
        return HealthStatus(ok=True, latency_ms=_ms_since(started))

    def _spec(self, entry: dict[str, Any]) -> ModelSpec:
        name = str(entry["id"])
        embeddings = "embed" in name.lower()  # a cheap guess; the registry's catalog knows better
        pricing = entry.get("pricing") if isinstance(entry.get("pricing"), dict) else {}  # OpenRouter
        return ModelSpec(
            id=model_id(self.provider_id, name),
            name=name,
            provider=self.provider_id,
            vendor=name.split("/", 1)[0] if "/" in name else "unknown",  # "meta-llama/…" on routers
            context_window=_context_window(entry),
            capabilities=Capabilities(chat=not embeddings, streaming=not embeddings, embeddings=embeddings,
                                      prompted_tools=prompted_tools(self.config, None)),
            input_cost_per_token=_float(pricing.get("prompt")),
            output_cost_per_token=_float(pricing.get("completion")),
            local=self._local,
            repository=Repository.LOCAL if self._local else Repository.CLOUD,
            display_name=entry["name"]
            if isinstance(entry.get("name"), str)
            else None,  # OpenRouter, LM Studio
        )

    # -- errors ----------------------------------------------------------------------------
    def _event_json(self, event: str, data: str, model: str) -> dict[str, Any]:
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise UpstreamUnavailableError(
                f"provider {self.provider_id} sent a stream event that is not JSON: {httpx_client.excerpt(data)}",
                provider=self.provider_id, model=model,
            ) from e
        if not isinstance(obj, dict):
            raise self._malformed("stream event", obj, model)
        if obj.get("error") is not None or event == "error":
            raise self._error_from_object(obj.get("error", obj), model)
        return obj

    def _error_from_object(self, error: Any, model: str | None) -> ByenatosError:
        """An error sent as JSON after the status line (in a 200 body or the stream)."""
        if not isinstance(error, dict):
            words = httpx_client.error_message(error if isinstance(error, str | bytes) else json.dumps(error),
                                               "it reported an error")
            return UpstreamUnavailableError(f"{words} (from provider {self.provider_id})",
                                            provider=self.provider_id, model=model)
        words = httpx_client.error_message(json.dumps({"error": error}), "it reported an error")
        message = f"{words} (from provider {self.provider_id})"
        code, kind = error.get("code"), error.get("type")
        if code == "context_length_exceeded":
            return ContextWindowExceededError(message, provider=self.provider_id, model=model)
        status = _status_of(code) or _status_of(kind) or 500
        retry_after = _float(error.get("retry_after")) or None
        return from_http_status(
            status, message, provider=self.provider_id, model=model, retry_after=retry_after
        )

    def _malformed(self, what: str, data: Any, model: str | None) -> UpstreamUnavailableError:
        shown = data if isinstance(data, str | bytes) else json.dumps(data, default=str)
        return UpstreamUnavailableError(
            f"provider {self.provider_id} sent an unexpected {what}: {httpx_client.excerpt(shown)}",
            provider=self.provider_id, model=model,
        )


def _aiohttp():  # imported on first pass-through request, not when the module loads
    import aiohttp

    return aiohttp


class _FastTransport:
    """The pass-through routes' client: our own HTTP/1.1 client for plain-http backends, aiohttp
    for https and proxied hosts.

    Measured on the gateway's fast path (CPU per request): httpx+anyio ~0.5 ms, aiohttp ~0.2 ms,
    `http1` a few tens of µs. chat/stream/embeddings keep the httpx client.
    """

    def __init__(self, config: ProviderConfig, headers: dict[str, str], *, local: bool) -> None:
        self._base = (config.base_url or "").rstrip("/")
        self._headers = {**headers, "Content-Type": "application/json"}
        self._config = config
        self._local = local
        self._session: Any = None
        self._http1: http1.Http1Client | None = None
        url = urlsplit(self._base)
        if url.scheme == "http" and (local or not _proxied(url.hostname or "")):
            self._http1 = http1.Http1Client(self._base, headers, connect_timeout=config.connect_timeout,
                                              read_timeout=config.timeout)

    @property
    def http1(self) -> http1.Http1Client | None:
        """Our own client, for a plain-http backend reached without a proxy."""
        return self._http1

    def session(self) -> Any:
        if self._session is None or self._session.closed:
            aiohttp = _aiohttp()
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._config.connect_timeout,
                                              sock_read=self._config.timeout),
                trust_env=not self._local,  # proxies from the environment apply to remote hosts only
            )
        return self._session

    async def aclose(self) -> None:
        if self._http1 is not None:
            await self.http1.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def post_json(self, path: str, body: dict[str, Any], *, provider: str, model: str | None) -> Any:
        data = orjson.dumps(body)
        try:
            if self._http1 is not None:
                answer: Any = await self.http1.request("POST", path, data)
                raw = await answer.read()
            else:
                async with self.session().post(self._base + path, data=data) as answer:
                    raw = await answer.read()
        except (OSError, TimeoutError, _aiohttp().ClientError, http1.TransportError) as e:
            raise pass_through_error(e, provider=provider, model=model) from e
        return _json_answer(answer.status, answer.headers, raw, provider=provider, model=model)

    @asynccontextmanager
    async def open_stream(self, path: str, body: dict[str, Any], *, provider: str,
                          model: str | None) -> AsyncIterator[AsyncIterator[bytes]]:
        """POST over aiohttp (https, proxied hosts) and hand back the body's pieces once the status
        is known to be 2xx; leaving the block closes the connection, which is how a cancelled
        client stops the upstream. Plain-http backends stream through `_Http1EventStream`."""
        data = orjson.dumps(body)
        try:
            answer = await self.session().post(self._base + path, data=data)
        except (OSError, TimeoutError, _aiohttp().ClientError) as e:
            raise pass_through_error(e, provider=provider, model=model) from e
        try:
            if answer.status >= 400:
                try:
                    raw = await answer.read()
                except (OSError, TimeoutError, _aiohttp().ClientError):
                    raw = b""
                raise _fast_status_error(answer.status, answer.headers, raw, provider=provider, model=model)
            yield answer.content.iter_any()
        finally:
            answer.close()  # drops the connection unless the body was read to the end


class _Http1EventStream:
    """An OpenAI stream from a plain-http backend, as batches of whole SSE events.

    The gateway relays every batch as it comes, so this is the per-event path: one object
    reading the connection's buffer directly, rather than the four async generators (body,
    chunks, context manager, batching) it replaced, each of which cost a frame switch and a
    registration with the event loop per event. The request goes out on the first `__anext__`
    (where the router's retries and failover still apply); `aclose()` before the end closes the
    connection, which is how the upstream learns that the client went away.
    """

    def __init__(self, client: http1.Http1Client, path: str, body: dict[str, Any], *, provider: str,
                 whole: Callable[[bytes, dict[str, Any]], bytes]) -> None:
        self._client, self._path, self._body = client, path, body
        self._whole = whole  # a whole JSON answer → the SSE batch (the driver's passthrough_stream_answer)
        self._where = {"provider": provider, "model": body.get("model")}
        self._response: http1.Response | None = None
        self._buffer = b""
        self._over = False

    def __aiter__(self) -> _Http1EventStream:
        return self

    async def __anext__(self) -> bytes:
        if self._over:
            raise StopAsyncIteration
        try:
            response = self._response
            if response is None:
                response = self._response = await self._open()
            while True:
                piece = await response.read_some()
                if not piece:
                    self._over = True
                    rest, self._buffer = self._buffer, b""
                    if rest.strip():
                        if looks_like_json(rest):  # the whole answer as plain JSON, not a stream
                            return self._whole(rest, self._body)
                        return rest  # a last event without its blank line; pass it on rather than lose it
                    raise StopAsyncIteration
                buffer = self._buffer + piece if self._buffer else piece
                end = sse.complete_prefix(buffer)
                if end:
                    self._buffer = buffer[end:]
                    return buffer if end == len(buffer) else buffer[:end]
                self._buffer = buffer
        except (OSError, TimeoutError, http1.TransportError) as e:
            self._close()
            raise pass_through_error(e, **self._where) from e
        except StopAsyncIteration:
            raise
        except BaseException:
            self._close()
            raise

    async def _open(self) -> http1.Response:
        response = await self._client.request("POST", self._path, orjson.dumps(self._body))
        if response.status >= 400:
            raw = b""
            with contextlib.suppress(OSError, http1.TransportError):
                raw = await response.read()
            response.release()
            raise _fast_status_error(response.status, response.headers, raw, **self._where)
        return response

    def _close(self) -> None:
        self._over = True
        if self._response is not None:
            self._response.release()  # pooled if the body was read to its end, else closed

    async def aclose(self) -> None:
        self._close()


def _proxied(host: str) -> bool:
    """Whether the environment routes plain-http requests to `host` through a proxy."""
    import urllib.request

    return bool(urllib.request.getproxies().get("http")) and not urllib.request.proxy_bypass(host)


def _json_answer(status: int, headers: Any, raw: bytes, *, provider: str, model: str | None) -> Any:
    """A whole answer's JSON, or the typed error for its status or for a body that is not JSON."""
    if status >= 400:  # headers are read only here (Retry-After): parsed on demand
        raise _fast_status_error(status, headers, raw, provider=provider, model=model)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise UpstreamUnavailableError(f"the answer from provider {provider} is not JSON: "
                                       f"{httpx_client.excerpt(raw)}", provider=provider, model=model) from e


def _fast_status_error(status: int, headers: Any, raw: bytes, *, provider: str, model: str | None) -> ByenatosError:
    retry = headers.get("retry-after") or headers.get("Retry-After")
    message = httpx_client.status_message(httpx_client.error_message(raw, ""), status, provider)
    return from_http_status(status, message, provider=provider, model=model, retry_after=parse_retry_after(retry))


def pass_through_error(exc: BaseException, *, provider: str, model: str | None) -> ByenatosError:
    """aiohttp's failures as the same typed errors `httpx_client.transport_error` gives for httpx."""
    kw = {"provider": provider, "model": model}
    if isinstance(exc, http1.TransportError):
        if exc.phase == "connect":
            kind = UpstreamTimeoutError if "timed out" in str(exc) else UpstreamUnreachableError
            return kind(str(exc), **kw)
        if exc.phase == "read":
            return UpstreamTimeoutError(str(exc), **kw)
        return UpstreamUnavailableError(f"connection dropped: {exc}", **kw)
    aiohttp = _aiohttp()  # imported only for its own errors: the http/1 path never needs it
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeoutError("timed out connecting", **kw)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return UpstreamTimeoutError("timed out waiting for the answer", **kw)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachableError(f"cannot connect: {exc.os_error or 'connection refused'}", **kw)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | OSError
                  | aiohttp.ClientOSError):
        return UpstreamUnavailableError(f"connection dropped: {exc or type(exc).__name__}", **kw)
    return UpstreamUnavailableError(f"{type(exc).__name__}: {exc}", **kw)


def _normalise_choices(obj: dict[str, Any], key: str) -> None:
    """Bend the small deviations servers make from OpenAI's shape back into it, in place."""
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        reason = choice.get("finish_reason")
        if reason is not None and reason not in _FINISH_REASONS:
            choice["finish_reason"] = _FINISH_ALIASES.get(str(reason), "stop")
        if choice.get(key) is None:
            choice[key] = {} if key == "delta" else {"role": "assistant", "content": None}
        for call in choice[key].get("tool_calls") or []:
            if isinstance(call, dict):
                call.setdefault("function", {})
                if key == "message":
                    call.setdefault("id", new_id("call"))


def _status_of(value: Any) -> int | None:
    if isinstance(value, int) and 400 <= value < 600:
        return value
    if isinstance(value, str):
        if value.isdigit() and 400 <= int(value) < 600:
            return int(value)
        return _ERROR_STATUS.get(value)
    return None


def _context_window(entry: dict[str, Any]) -> int:
    candidates = [entry.get(f) for f in _CONTEXT_FIELDS]
    top = entry.get("top_provider")
    if isinstance(top, dict):
        candidates.append(top.get("context_length"))
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return DEFAULT_CONTEXT_WINDOW


def _float(value: Any) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
