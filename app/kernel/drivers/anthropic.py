"""The driver for Anthropic's native Messages API (`POST /v1/messages`).

Translation lives in `app.kernel.compat.anthropic`; this module only speaks HTTP:
headers, the streaming event loop, model discovery and health.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.kernel.canonical import (
    Capabilities,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    HealthStatus,
    ModelSpec,
    Repository,
    model_id,
)
from app.kernel.compat.anthropic import (
    ANTHROPIC_VERSION,
    AnthropicStreamDecoder,
    from_anthropic_response,
    to_anthropic_request,
)
from app.kernel.drivers import httpx_client
from app.kernel.drivers.base import Driver, ProviderConfig, prompted_tools
from app.kernel.errors import ByenatosError, UpstreamUnavailableError

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_CONTEXT_WINDOW = 200_000  # every current Claude model; /v1/models says so when it can
HEALTH_TIMEOUT = 2.0  # seconds; a probe must not hang the health loop
MODEL_PAGE_SIZE = 1000  # the API's maximum; one page covers the catalogue today
MAX_MODEL_PAGES = 10


class AnthropicDriver(Driver):
    kind = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        base = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        # People paste the API root with or without /v1; our paths carry it.
        self.base_url = base.removesuffix("/v1")
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"anthropic-version": ANTHROPIC_VERSION, **(self.config.options.get("headers") or {})}
            if self.config.api_key:
                headers["x-api-key"] = self.config.api_key
            beta = self.config.options.get("anthropic_beta")
            if beta:
                headers["anthropic-beta"] = beta if isinstance(beta, str) else ",".join(beta)
            self._client = httpx_client.make_client(
                dataclasses.replace(self.config, base_url=self.base_url), headers=headers
            )
        return self._client

    # -- chat ------------------------------------------------------------------------------
    async def chat(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        body = to_anthropic_request(request, model=model.name, spec=model, stream=False)
        data = await httpx_client.post_json(
            self.client, "/v1/messages", body, provider=self.provider_id, model=model.name
        )
        try:
            return from_anthropic_response(data, model=model.name)
        except UpstreamUnavailableError as e:
            e.provider, e.model = self.provider_id, model.name
            raise

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[ChatChunk]:
        body = to_anthropic_request(request, model=model.name, spec=model, stream=True)
        where = {"provider": self.provider_id, "model": model.name}
        decoder = AnthropicStreamDecoder(model=model.name, provider=self.provider_id)
        # Leaving this block (end, error, aclose() or cancellation) closes the response, and
        # with it the connection: that is what stops Anthropic generating.
        async with httpx_client.open_stream(self.client, "/v1/messages", body, **where) as response:
            async for event, data in httpx_client.iter_sse(response, **where):
                for chunk in decoder.feed(event, data):
                    yield chunk
                if decoder.done:
                    return
        raise UpstreamUnavailableError("the stream ended before message_stop (connection dropped?)", **where)

    # -- models and health -----------------------------------------------------------------
    async def list_models(self) -> list[ModelSpec]:
        """The provider's models; nothing when it cannot be asked (offline, bad key)."""
        try:
            return [self._spec(entry) for entry in await self._model_entries() if entry.get("id")]
        except ByenatosError:
            return []

    async def _model_entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_MODEL_PAGES):
            path = f"/v1/models?limit={MODEL_PAGE_SIZE}" + (f"&after_id={after}" if after else "")
            page = await httpx_client.get_json(self.client, path, provider=self.provider_id)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise UpstreamUnavailableError("unexpected /v1/models answer", provider=self.provider_id)
            entries += [e for e in page["data"] if isinstance(e, dict) and e.get("lifecycle") != "retired"]
            after = page.get("last_id")
            if not page.get("has_more") or not after:
                break
        return entries

    def _spec(self, entry: dict[str, Any]) -> ModelSpec:
        name = str(entry["id"])
        return ModelSpec(
            id=model_id(self.provider_id, name),
            name=name,
            provider=self.provider_id,
            vendor="anthropic",
            display_name=entry.get("display_name") or None,
            context_window=entry.get("max_input_tokens") or DEFAULT_CONTEXT_WINDOW,
            max_output_tokens=entry.get("max_tokens") or None,
            capabilities=Capabilities(tools=True, vision=True, json_mode=True,
                                      prompted_tools=prompted_tools(self.config, True)),
            repository=Repository.CLOUD,
        )

    async def health(self) -> HealthStatus:
        started = time.perf_counter()
        try:
            await httpx_client.get_json(
                self.client, "/v1/models?limit=1", provider=self.provider_id, timeout=HEALTH_TIMEOUT
            )
        except ByenatosError as e:
            return HealthStatus(ok=False, detail=str(e))
        return HealthStatus(ok=True, latency_ms=(time.perf_counter() - started) * 1000)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
