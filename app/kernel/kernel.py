"""The Kernel: builds the services, starts and stops them, and is the public async API.

The gateway, the CLI and (later) the Qt UI all go through this class; none of them touch
drivers, the registry tables or secrets directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.kernel.canonical import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResult,
    HealthStatus,
    ModelSpec,
    Usage,
    model_id,
)
from app.kernel.config import Paths, Settings, load_settings, save_settings
from app.kernel.drivers import Driver, create_driver
from app.kernel.errors import ByenatosError, ModelNotFoundError
from app.kernel.events import EventBus, ModelsChanged, RequestFinished
from app.kernel.registry import ProviderInfo, Registry
from app.kernel.security.secrets import SecretStore

if TYPE_CHECKING:
    from peewee import SqliteDatabase

    from app.kernel.discovery import Discovery

log = logging.getLogger(__name__)

DEFAULT_ALIASES = {"default", ""}


@dataclass
class ScanReport:
    """What `scan()` found and did, in words a user can read."""

    providers: list[str] = field(default_factory=list)
    models: int = 0
    notes: list[str] = field(default_factory=list)


class Kernel:
    def __init__(self, paths: Paths | None = None, settings: Settings | None = None) -> None:
        self.paths = (paths or Paths.default()).ensure()
        self.settings = settings or load_settings(self.paths)
        self.events = EventBus()
        self.secrets = SecretStore(self.paths.secrets_file)
        self.registry = Registry(self.secrets)
        self._db: SqliteDatabase | None = None
        self._drivers: dict[str, Driver] = {}
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> Kernel:
        if self._started:
            return self
        from app.kernel.store import open_database

        self._db = open_database(self.paths.database)
        self._started = True
        return self

    async def stop(self) -> None:
        drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            try:
                await driver.aclose()
            except Exception:  # one broken driver must not keep the others open
                log.exception("closing driver %s failed", driver.provider_id)
        if self._db is not None:
            self._db.close()
            self._db = None
        self._started = False

    async def __aenter__(self) -> Kernel:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def save_settings(self) -> None:
        save_settings(self.paths, self.settings)

    # -- drivers and models ----------------------------------------------------------------
    def driver(self, provider_id: str) -> Driver:
        """The live driver of a provider, created on first use (keys resolved then)."""
        driver = self._drivers.get(provider_id)
        if driver is None:
            config = self.registry.provider_config(
                provider_id, timeout=self.settings.request_timeout, connect_timeout=self.settings.connect_timeout
            )
            driver = create_driver(config)
            self._drivers[provider_id] = driver
        return driver

    async def reset_driver(self, provider_id: str) -> None:
        """Drop a provider's driver so the next use picks up changed settings or keys."""
        driver = self._drivers.pop(provider_id, None)
        if driver is not None:
            await driver.aclose()

    def list_models(self) -> list[ModelSpec]:
        return self.registry.models()

    def default_model(self) -> ModelSpec:
        """The model behind the `default` alias until the socket takes this over."""
        if self.settings.default_model:
            return self.registry.find_model(self.settings.default_model)
        models = [m for m in self.registry.models() if m.capabilities.chat and not m.capabilities.embeddings]
        if not models:
            raise ModelNotFoundError(
                "no model available yet: run `byenatos models scan`, or add a provider with `byenatos models add`"
            )
        # Local first (private, free), then the rest; by id for a stable choice.
        return sorted(models, key=lambda m: (not m.local, m.id))[0]

    def set_default_model(self, name: str) -> ModelSpec:
        spec = self.registry.find_model(name)
        self.settings.default_model = spec.id
        self.save_settings()
        return spec

    def resolve(self, name: str) -> tuple[Driver, ModelSpec]:
        spec = self.default_model() if name in DEFAULT_ALIASES else self.registry.find_model(name)
        return self.driver(spec.provider), spec

    # -- inference -----------------------------------------------------------------------------
    async def chat(self, request: ChatRequest, *, app: str | None = None) -> ChatResponse:
        driver, spec = self.resolve(request.model)
        started = time.perf_counter()
        outcome = "ok"
        response: ChatResponse | None = None
        try:
            response = await driver.chat(request, spec)
            return response
        except ByenatosError as e:
            outcome = e.code
            raise
        finally:
            self._finished(spec, app, False, started, response.usage if response else None, outcome)

    async def stream(self, request: ChatRequest, *, app: str | None = None) -> AsyncIterator[ChatChunk]:
        """Chunks of the answer. Resolution errors raise before the first chunk."""
        driver, spec = self.resolve(request.model)
        return self._stream(driver, spec, request, app)

    async def _stream(self, driver: Driver, spec: ModelSpec, request: ChatRequest,
                      app: str | None) -> AsyncIterator[ChatChunk]:
        started = time.perf_counter()
        outcome, usage = "cancelled", None
        try:
            async for chunk in driver.stream(request, spec):
                if chunk.usage is not None:
                    usage = chunk.usage
                yield chunk
            outcome = "ok"
        except ByenatosError as e:
            outcome = e.code
            raise
        finally:
            self._finished(spec, app, True, started, usage, outcome)

    # OpenAI JSON in, OpenAI JSON out: a client and a backend that both speak OpenAI need no
    # translation, so these skip the pydantic round trip where the driver can pass through.
    async def chat_raw(self, body: dict[str, Any], *, app: str | None = None) -> dict[str, Any]:
        """`body` is an OpenAI chat request (already validated by the caller); answer as OpenAI JSON."""
        driver, spec = self.resolve(body.get("model") or "default")
        raw = getattr(driver, "chat_raw", None)
        if raw is None:
            answer = await self.chat(ChatRequest.model_validate(body), app=app)
            return answer.model_dump(exclude_none=True)
        started, outcome, usage = time.perf_counter(), "ok", None
        try:
            data = await raw({**body, "model": spec.name})
            usage = _usage_of(data.get("usage"))
            return data
        except ByenatosError as e:
            outcome = e.code
            raise
        finally:
            self._finished(spec, app, False, started, usage, outcome)

    async def stream_raw(self, body: dict[str, Any], *, app: str | None = None) -> AsyncIterator[bytes]:
        """Server-sent-event bytes of an OpenAI stream, `data: [DONE]` included."""
        driver, spec = self.resolve(body.get("model") or "default")
        raw = getattr(driver, "stream_raw", None)
        if raw is None:
            chunks = await self.stream(ChatRequest.model_validate(body), app=app)
            return _encode_sse(chunks)
        return self._stream_raw(raw, spec, {**body, "model": spec.name, "stream": True}, app)

    async def _stream_raw(self, raw: Any, spec: ModelSpec, body: dict[str, Any],
                          app: str | None) -> AsyncIterator[bytes]:
        started, outcome = time.perf_counter(), "cancelled"
        try:
            async for event in raw(body):
                yield event
            outcome = "ok"
        except ByenatosError as e:
            outcome = e.code
            raise
        finally:
            self._finished(spec, app, True, started, None, outcome)

    async def embed(self, texts: list[str], model: str) -> EmbeddingResult:
        driver, spec = self.resolve(model)
        return await driver.embed(texts, spec)

    def _finished(self, spec: ModelSpec, app: str | None, stream: bool, started: float, usage: Any,
                  outcome: str) -> None:
        self.events.publish(RequestFinished(
            model=spec.id, provider=spec.provider, app=app, stream=stream,
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cost=spec.cost(usage), outcome=outcome,
        ))

    # -- providers -----------------------------------------------------------------------------
    async def add_provider(self, id: str, kind: str, **kw: Any) -> ProviderInfo:
        info = self.registry.add_provider(id, kind, **kw)
        await self.reset_driver(id)
        return info

    async def remove_provider(self, id: str) -> None:
        await self.reset_driver(id)
        self.registry.remove_provider(id)
        self.events.publish(ModelsChanged(provider=id, count=0))

    async def refresh_provider(self, provider_id: str) -> int:
        """Ask a provider for its models now and record them."""
        specs = await self.driver(provider_id).list_models()
        n = self.registry.upsert_models(provider_id, [_enrich(s) for s in specs], replace=True)
        self.events.publish(ModelsChanged(provider=provider_id, count=n))
        return n

    async def provider_health(self, provider_id: str) -> HealthStatus:
        try:
            return await self.driver(provider_id).health()
        except ByenatosError as e:
            return HealthStatus(ok=False, detail=str(e))

    async def scan(self) -> ScanReport:
        """Discover local files, local servers and keys in the environment; record what was found."""
        from app.kernel.discovery import discover

        found = await discover(self.settings.discovery, self.paths)
        return await self.apply_discovery(found)

    async def apply_discovery(self, found: Discovery) -> ScanReport:
        report = ScanReport(notes=list(found.notes))
        for p in found.providers:
            self.registry.add_provider(p.id, p.kind, base_url=p.base_url, key_env=p.key_env, origin=p.origin)
            await self.reset_driver(p.id)
            report.providers.append(p.id)
        by_provider: dict[str, list[ModelSpec]] = {}
        for m in found.models:
            by_provider.setdefault(m.provider, []).append(m)
        for pid in {p.id for p in found.providers} | set(by_provider):
            if pid not in self.registry.provider_ids():  # models of a provider discovery did not return
                continue
            self.registry.upsert_models(pid, by_provider.get(pid, []), replace=True)
        # Servers and clouds describe their own models better than a probe does (Ollama's
        # /api/show knows the real window); GGUF files were already read by discovery itself.
        remote = [p.id for p in found.providers if p.kind != "llamacpp"]
        await asyncio.gather(*(self._refresh_quietly(pid, report) for pid in remote))
        report.models = sum(1 for m in self.registry.models() if m.provider in set(report.providers))
        self.events.publish(ModelsChanged(provider=None, count=report.models))
        return report

    async def _refresh_quietly(self, provider_id: str, report: ScanReport) -> None:
        try:
            async with asyncio.timeout(max(5.0, self.settings.discovery.probe_timeout * 4)):
                await self.refresh_provider(provider_id)
        except (ByenatosError, TimeoutError) as e:
            seeded = self._seed_from_catalog(provider_id)
            extra = f"; showing {seeded} models from the built-in catalog" if seeded else ""
            report.notes.append(f"{provider_id}: could not list models ({e or 'timed out'}){extra}")

    def _seed_from_catalog(self, provider_id: str) -> int:
        """Cloud providers that cannot be reached right now still show their known models."""
        if any(m.provider == provider_id for m in self.registry.models()):
            return 0
        from app.kernel import catalog
        from app.kernel.presets import find_preset

        preset = find_preset(provider_id)
        if preset is None or preset.local:
            return 0
        specs = [
            catalog.enrich(ModelSpec(id=model_id(provider_id, e.name), name=e.name, provider=provider_id), e)
            for e in catalog.known_models(preset.litellm_provider or preset.id)
        ]
        return self.registry.upsert_models(provider_id, specs) if specs else 0


def _usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Usage.model_validate(raw)
    except ValueError:
        return None


async def _encode_sse(chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _enrich(spec: ModelSpec) -> ModelSpec:
    try:
        from app.kernel import catalog
    except ImportError:
        return spec
    return catalog.enrich(spec)
