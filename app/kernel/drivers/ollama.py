"""The native Ollama driver: /api/chat (NDJSON streaming), /api/tags + /api/show, /api/ps,
load and unload through /api/generate, /api/embed.

Ollama runs models with the context window it is told (`num_ctx`), not the one the model
was trained for; left alone it uses a small default and silently drops the start of longer
prompts — where the personal system prompt sits. So the driver decides one window per model,
`min(trained window, options["num_ctx"])`, reports it as the spec's context window (the kernel
trims and budgets to it) and sends it with every request (a differing num_ctx would also
make Ollama reload the model).

Provider options (ProviderConfig.options):
  keep_alive      how long Ollama keeps a model loaded after a request (default "5m")
  num_ctx         the largest context window to run models with (default 8192)
  show_timeout    seconds to wait for each /api/show while listing models (default 10)
  health_timeout  seconds for the health probe (default 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any, ClassVar

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
)
from app.kernel.compat.ollama import (
    OllamaStreamReader,
    error_from_ollama,
    from_ollama_response,
    to_ollama_request,
)
from app.kernel.drivers import httpx_client
from app.kernel.drivers.base import Driver, ProviderConfig, prompted_tools
from app.kernel.errors import BadRequestError, ByenatosError, NotFoundError, UpstreamUnavailableError

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
DEFAULT_KEEP_ALIVE = "5m"
DEFAULT_NUM_CTX = 8192  # ~1 GB of KV cache for an 8B model: a sane desktop default
FALLBACK_CONTEXT = 2048  # what Ollama itself assumed before models reported theirs
_SHOW_CONCURRENCY = 4  # /api/show reads GGUF headers; don't stampede a local server

# Model-name and family prefixes → who made the model. Names first: many models report the
# architecture they borrow ("llama" for mistral, llava…) as their family.
_VENDORS = (
    ("llama", "meta"), ("codellama", "meta"), ("mistral", "mistral"), ("mixtral", "mistral"),
    ("codestral", "mistral"), ("ministral", "mistral"), ("gemma", "google"), ("codegemma", "google"),
    ("qwen", "alibaba"), ("qwq", "alibaba"), ("phi", "microsoft"), ("deepseek", "deepseek"),
    ("command-r", "cohere"), ("aya", "cohere"), ("granite", "ibm"), ("starcoder", "bigcode"),
    ("falcon", "tii"), ("olmo", "allenai"), ("yi", "01-ai"), ("nomic", "nomic"), ("mxbai", "mixedbread"),
    ("snowflake", "snowflake"), ("bge", "baai"), ("smollm", "huggingface"), ("gpt-oss", "openai"),
    ("nemotron", "nvidia"), ("exaone", "lg"), ("internlm", "shanghai-ai-lab"), ("glm", "zhipu"),
    ("llava", "llava"), ("tinyllama", "tinyllama"), ("orca", "microsoft"), ("vicuna", "lmsys"),
)  # fmt: skip


def vendor_of(name: str, family: str | None) -> str:
    base = name.split(":", 1)[0].rsplit("/", 1)[-1].lower()
    for candidate in (base, (family or "").lower()):
        # longest prefix first, so "tinyllama" is not taken for a "llama"
        for prefix, vendor in sorted(_VENDORS, key=lambda pv: -len(pv[0])):
            if candidate.startswith(prefix):
                return vendor
    return (family or "unknown").lower() or "unknown"


_PARAMS_RE = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMBT])", re.IGNORECASE)


def parameter_count(parameter_size: str | None) -> float | None:
    """Ollama's "8.0B" / "494.03M" → a number of parameters."""
    match = _PARAMS_RE.search(parameter_size or "")
    if match is None:
        return None
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[match.group("unit").upper()]
    return float(match.group("n")) * scale


def quality_from_size(params: float | None) -> float:
    """A coarse prior the router can rank on: bigger local models answer better, on a log scale."""
    if not params:
        return 0.4
    billions = params / 1e9
    return round(min(0.85, max(0.2, 0.35 + 0.08 * math.log2(1 + billions))), 3)


def trained_context(show: dict[str, Any] | None) -> int | None:
    """The model's own window from /api/show: `model_info["<arch>.context_length"]`."""
    info = (show or {}).get("model_info") or {}
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:  # an architecture we did not name: any "*.context_length" will do
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return int(value) if isinstance(value, int | float) and value > 0 else None


def capabilities_of(name: str, family: str, show: dict[str, Any] | None) -> Capabilities:
    """From /api/show's `capabilities` (Ollama ≥ 0.6.4); otherwise from the template and name."""
    show = show or {}
    declared = show.get("capabilities")
    if isinstance(declared, list):
        embeds = "embedding" in declared
        return Capabilities(
            chat=not embeds or "completion" in declared,
            streaming=not embeds,
            tools="tools" in declared,
            vision="vision" in declared,
            json_mode=not embeds,
            embeddings=embeds,
        )
    families = [f.lower() for f in ((show.get("details") or {}).get("families") or [family])]
    embeds = "embed" in name.lower() or any(f.endswith("bert") for f in families)
    return Capabilities(
        chat=not embeds,
        streaming=not embeds,
        tools=".Tools" in str(show.get("template") or ""),  # Ollama itself decides tool support this way
        vision="clip" in families or "mllama" in families or bool(show.get("projector_info")),
        json_mode=not embeds,
        embeddings=embeds,
    )


class OllamaDriver(Driver):
    kind: ClassVar[str] = "ollama"
    manages_memory: ClassVar[bool] = True

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(replace(config, base_url=config.base_url or DEFAULT_BASE_URL))
        # Ollama needs no key; one set means a proxy or hosted Ollama that wants a bearer token.
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else None
        self._client = httpx_client.make_client(self.config, headers=headers)

    # -- settings ----------------------------------------------------------------------------
    @property
    def keep_alive(self) -> str | int | float:
        return self.config.options.get("keep_alive", DEFAULT_KEEP_ALIVE)

    @property
    def max_num_ctx(self) -> int:
        return int(self.config.options.get("num_ctx", DEFAULT_NUM_CTX))

    def num_ctx_for(self, model: ModelSpec) -> int:
        return max(1, min(model.context_window, self.max_num_ctx))

    @contextlib.contextmanager
    def _ollama_errors(self, model: str | None) -> Iterator[None]:
        """Sharpen httpx_client's generic status mapping with what Ollama's messages say
        ("model 'x' not found" → ModelNotFoundError, "does not support tools" → NotSupportedError)."""
        try:
            yield
        except (NotFoundError, BadRequestError) as e:
            if type(e) not in (NotFoundError, BadRequestError):
                raise
            raise error_from_ollama(e.message, status=e.status, provider=self.provider_id, model=model) from e

    # -- chat --------------------------------------------------------------------------------
    def _chat_body(self, request: ChatRequest, model: ModelSpec, *, stream: bool) -> dict[str, Any]:
        try:
            return to_ollama_request(
                request,
                model=model.name,
                stream=stream,
                num_ctx=self.num_ctx_for(model),
                keep_alive=self.keep_alive,
            )
        except ByenatosError as e:
            e.provider, e.model = e.provider or self.provider_id, e.model or model.name
            raise

    async def chat(self, request: ChatRequest, model: ModelSpec) -> ChatResponse:
        body = self._chat_body(request, model, stream=False)
        with self._ollama_errors(model.name):
            data = await httpx_client.post_json(
                self._client, "/api/chat", body, provider=self.provider_id, model=model.name
            )
        return from_ollama_response(data, model=model.name, provider=self.provider_id)

    async def stream(self, request: ChatRequest, model: ModelSpec) -> AsyncIterator[ChatChunk]:
        body = self._chat_body(request, model, stream=True)
        reader = OllamaStreamReader(model=model.name, provider=self.provider_id)
        with self._ollama_errors(model.name):
            # Leaving this block — normally, on error, or because the consumer closed us —
            # closes the HTTP response, and Ollama stops generating for a client that left.
            async with httpx_client.open_stream(
                self._client, "/api/chat", body, provider=self.provider_id, model=model.name
            ) as response:
                async for obj in httpx_client.iter_json_lines(response, provider=self.provider_id, model=model.name):
                    chunk = reader.read(obj)
                    if chunk is not None:
                        yield chunk
                    if reader.done:
                        return
        raise UpstreamUnavailableError(
            "Ollama ended the stream before it was done", provider=self.provider_id, model=model.name
        )

    # -- models ------------------------------------------------------------------------------
    async def _show(self, name: str, limit: asyncio.Semaphore) -> dict[str, Any] | None:
        """/api/show for one model, or None: a model whose details fail still gets listed."""
        timeout = float(self.config.options.get("show_timeout", 10.0))
        async with limit:
            try:
                async with asyncio.timeout(timeout):
                    data = await httpx_client.post_json(
                        self._client, "/api/show", {"model": name}, provider=self.provider_id, model=name
                    )
            except (ByenatosError, TimeoutError):
                return None
        return data if isinstance(data, dict) else None

    def spec_for(self, tag: dict[str, Any], show: dict[str, Any] | None) -> ModelSpec:
        name = str(tag.get("name") or tag.get("model"))
        details = tag.get("details") or {}
        family = str(details.get("family") or "")
        trained = trained_context(show) or FALLBACK_CONTEXT
        size = tag.get("size")
        capabilities = capabilities_of(name, family, show)
        # without /api/show we cannot tell whether the model has tools: try them
        capabilities.prompted_tools = prompted_tools(self.config, capabilities.tools if show else None)
        return ModelSpec(
            id=model_id(self.provider_id, name),
            name=name,
            provider=self.provider_id,
            vendor=vendor_of(name, family),
            context_window=min(trained, self.max_num_ctx),
            capabilities=capabilities,
            local=True,
            memory_bytes=int(size) if isinstance(size, int | float) and size > 0 else None,
            quality=quality_from_size(parameter_count(details.get("parameter_size"))),
            repository=Repository.LOCAL,
        )

    async def list_models(self) -> list[ModelSpec]:
        data = await httpx_client.get_json(self._client, "/api/tags", provider=self.provider_id)
        tags = [
            t for t in (data.get("models") if isinstance(data, dict) else None) or [] if isinstance(t, dict)
        ]
        tags = [t for t in tags if t.get("name") or t.get("model")]
        limit = asyncio.Semaphore(_SHOW_CONCURRENCY)
        shows = await asyncio.gather(*(self._show(str(t.get("name") or t.get("model")), limit) for t in tags))
        return [self.spec_for(tag, show) for tag, show in zip(tags, shows, strict=True)]

    async def loaded_models(self) -> list[str]:
        data = await httpx_client.get_json(self._client, "/api/ps", provider=self.provider_id)
        models = (data.get("models") if isinstance(data, dict) else None) or []
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    async def _generate_empty(self, model: ModelSpec, keep_alive: str | int | float) -> None:
        # An empty prompt makes Ollama load the model and answer at once; keep_alive 0 unloads.
        # num_ctx goes along so the model is loaded with the window chat will ask for.
        options = {"num_ctx": self.num_ctx_for(model)}
        body = {"model": model.name, "keep_alive": keep_alive, "stream": False, "options": options}
        with self._ollama_errors(model.name):
            data = await httpx_client.post_json(
                self._client, "/api/generate", body, provider=self.provider_id, model=model.name
            )
        if isinstance(data, dict) and data.get("error"):
            raise error_from_ollama(str(data["error"]), provider=self.provider_id, model=model.name)

    async def load(self, model: ModelSpec) -> None:
        await self._generate_empty(model, self.keep_alive)

    async def unload(self, model: ModelSpec) -> None:
        await self._generate_empty(model, 0)

    # -- embeddings, health, lifecycle ------------------------------------------------------------
    async def embed(self, texts: list[str], model: ModelSpec) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult(model=model.name, vectors=[])
        body = {"model": model.name, "input": texts, "keep_alive": self.keep_alive}
        with self._ollama_errors(model.name):
            data = await httpx_client.post_json(
                self._client, "/api/embed", body, provider=self.provider_id, model=model.name
            )
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise UpstreamUnavailableError(
                f"Ollama returned {len(vectors) if isinstance(vectors, list) else 'no'} embeddings for {len(texts)} texts",
                provider=self.provider_id,
                model=model.name,
            )
        return EmbeddingResult(
            model=model.name, vectors=vectors, usage=Usage.of(int(data.get("prompt_eval_count") or 0), 0)
        )

    async def health(self) -> HealthStatus:
        timeout = float(self.config.options.get("health_timeout", 2.0))
        started = time.perf_counter()
        try:
            data = await httpx_client.get_json(
                self._client, "/api/version", provider=self.provider_id, timeout=timeout
            )
        except ByenatosError as e:
            return HealthStatus(ok=False, detail=str(e))
        latency_ms = (time.perf_counter() - started) * 1000
        version = data.get("version") if isinstance(data, dict) else None
        return HealthStatus(ok=True, latency_ms=latency_ms, detail=f"ollama {version or '(unknown version)'}")

    async def aclose(self) -> None:
        await self._client.aclose()
