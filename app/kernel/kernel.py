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
    model_id,
)
from app.kernel.config import Paths, Settings, load_settings, save_settings
from app.kernel.drivers import DRIVER_KINDS, Driver, create_driver
from app.kernel.errors import ByenatosError, ModelNotFoundError
from app.kernel.events import EventBus, ModelsChanged, RequestFinished
from app.kernel.models.registry import ProviderInfo, Registry
from app.kernel.monitor.accounting import Accounting
from app.kernel.scheduler import Scheduler
from app.kernel.security.apps import AppRegistry
from app.kernel.security.secrets import SecretStore
from app.kernel.socket.conversations import Conversations
from app.kernel.socket.manager import DEFAULT_ALIAS, Generation, SocketManager
from app.kernel.socket.residency import ResidencyManager
from app.kernel.socket.router import Deployment, Opening, RoutePlan, Router
from app.kernel.socket.storage import socket_storage
from app.kernel.socket.swap_policy import SwapController
from app.kernel.streams import (
    EMPTY_ANSWER,
    ObservedStream,
    answer_has_output,
    chunk_has_output,
    chunk_usage,
    encode_sse,
    sse_has_output,
    sse_usage,
    stream_wire,
    usage_of,
)
from app.kernel.tools import prompted_stream

if TYPE_CHECKING:
    from peewee import SqliteDatabase

    from app.kernel.agents.runtime import AgentRuntime
    from app.kernel.documents.service import DocumentsService
    from app.kernel.mcp.host import McpHost
    from app.kernel.models.discovery import Discovery
    from app.kernel.personal.service import PersonalService
    from app.kernel.tools.assistant import AssistantTools
    from app.kernel.tools.base import ToolRegistry
    from app.kernel.tools.invoke import ToolInvoker

log = logging.getLogger(__name__)
PERSONAL_DELAY_S = 1.0  # personal memory is set up this long after start (its store opens later still)
DOCUMENTS_DELAY_S = 5.0  # the document index's catch-up scan and watcher start once start-up has settled

DEFAULT_ALIASES = {DEFAULT_ALIAS, ""}  # names that mean "whatever is in the default socket"
# Kernel-run agents that were running when the process last stopped (app.kernel.agents.process).
_LIVE_KERNEL_AGENTS = ("SELECT 1 FROM agent WHERE kind = 'kernel' AND state IN "
                       "('ready', 'running', 'waiting_model', 'waiting_tool', 'waiting_approval', 'waiting_input') "
                       "LIMIT 1")


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
        self.registry = Registry(self.secrets, kinds=DRIVER_KINDS)
        self.apps = AppRegistry(self.secrets)  # gateway apps, tokens, scopes, limits
        self.accounting = Accounting(self.events, self.registry)  # audit log, metrics, budgets
        self._db: SqliteDatabase | None = None
        self._personal_later: asyncio.TimerHandle | None = None
        self._personal: PersonalService | None = None  # see the `personal` property
        self._agents: AgentRuntime | None = None  # see the `agents` property
        self._documents: DocumentsService | None = None  # see the `documents` property
        self._documents_later: asyncio.TimerHandle | None = None
        self._tool_registry: ToolRegistry | None = None  # see the `tool_registry` property
        self._assistant_tools: AssistantTools | None = None  # see the `assistant_tools` property
        self._mcp: McpHost | None = None  # see the `mcp` property
        self._tool_invoker: ToolInvoker | None = None  # see the `tool_invoker` property
        self._drivers: dict[str, Driver] = {}
        self._started = False
        self.router = Router(self.driver, self.events, memory_free=_available_memory,
                             scheduler=Scheduler.from_settings(self.settings.scheduler))
        self.socket = SocketManager(self.registry, self.events, socket_storage(),
                                    initial_default=self.best_default_model, preload=self._preload)
        budget = self.settings.socket.memory_budget_mb
        self.residency = ResidencyManager(  # local models under a memory budget, LRU
            budget_bytes=budget * 2**20 if budget else None, max_models=self.settings.socket.max_loaded_models,
            events=self.events)
        self.policy = SwapController(self.socket, self.router, self.registry, self.events, self.settings.socket,
                                     memory_available=_available_memory)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> Kernel:
        if self._started:
            return self
        from app.kernel.store import open_database

        self._db = open_database(self.paths.database)
        await self.apps.start()
        await self.accounting.start()
        self.socket.load()
        self.conversations = Conversations(self._db, self.socket, plan_for=self.plan_for,
                                           chat_routed=self.chat_routed, stream=self.stream)
        self.policy.start()
        self._started = True
        if self._db.execute_sql(_LIVE_KERNEL_AGENTS).fetchone() is not None and not self._served_elsewhere():
            self.agents.begin()  # agents were running when ByenatOS last stopped: resume them
        if self._personal is not None:
            # Built before start (the desktop app's tray and views read it while the window is
            # built) or kept from before a stop: it starts with the kernel.
            self._personal.begin()
        else:
            # Personal memory is built once start-up has settled, or by whatever needs it first.
            self._personal_later = asyncio.get_running_loop().call_later(PERSONAL_DELAY_S, lambda: self.personal)
        from app.kernel.documents.folders import configured

        if configured(self.paths) and not self._served_elsewhere():
            # The user's folders: indexed again (what changed meanwhile) and watched, unless another
            # ByenatOS serves this home (then its kernel keeps them in step; this one is a CLI command).
            self._documents_later = asyncio.get_running_loop().call_later(
                DOCUMENTS_DELAY_S, lambda: self.documents.begin())
        return self

    def _served_elsewhere(self) -> bool:
        """Another ByenatOS runs for this home (a fresh runtime file names another live process):
        its kernel owns the agents. A CLI command started beside it must not resume them too."""
        import os

        from app.kernel import runtime_file

        running = runtime_file.read(self.paths)
        return running is not None and running.pid != os.getpid()

    @property
    def personal(self) -> PersonalService:
        """HiNATA records and the Personal System Prompt (an encrypted store, opened in the
        background). Built on first use: its modules cost ~20 ms that `serve` need not spend
        before it answers. Built before `start()`, it begins when the kernel starts; after
        `stop()` it is stopped, and the next `start()` begins it again."""
        if self._personal is None:
            from app.kernel.personal.service import PersonalService

            self._personal = PersonalService(self.paths, self.secrets, self.events, chat=self.chat, embed=self.embed)
            if self._started:
                self._personal.begin()
        return self._personal

    @personal.setter
    def personal(self, service: PersonalService) -> None:
        """Replace the service (tests, a restart with other options). One set before start
        begins with the kernel; one set while the kernel runs is the caller's to start."""
        self._personal = service

    @property
    def documents(self) -> DocumentsService:
        """The user's folders indexed into personal memory (app.kernel.documents): folders, status,
        search by meaning. Built on first use; its watcher runs once the kernel began it."""
        if self._documents is None:
            from app.kernel.documents.service import DocumentsService

            self._documents = DocumentsService(self.paths, self.events, lambda: self.personal,
                                               watch_added=self._started and not self._served_elsewhere())
        return self._documents

    @property
    def agents(self) -> AgentRuntime:
        """The agent kernel: the process table, durable runs, spawn/suspend/resume/kill.
        Built on first use (the durable engine itself is imported when the first agent runs)."""
        if self._agents is None:
            if self._db is None:
                from app.kernel.errors import ConfigError

                raise ConfigError("the agent kernel needs a started kernel")
            from app.kernel.agents.runtime import AgentRuntime

            self._agents = AgentRuntime(db=self._db, data_dir=self.paths.data_dir, events=self.events, apps=self.apps,
                                        chat_routed=self.chat_routed, plan_for=self.plan_for,
                                        personal=lambda: self.personal, check_budget=self._check_app_budget,
                                        tools=self.tool_registry, tool_services=self.tool_services,
                                        invoker=lambda: self.tool_invoker)
            self.accounting.agent_usage = self._agents.external_usage  # external agents' calls
        return self._agents

    @property
    def tool_registry(self) -> ToolRegistry:
        """Every tool agents and the assistant may call: the built-in ones, and each configured
        MCP server's as a source (app.kernel.tools). Built on first use."""
        if self._tool_registry is None:
            from app.kernel.tools.builtin import builtin_tools

            self._tool_registry = builtin_tools()
            self.mcp.attach(self._tool_registry)  # each configured MCP server's tools, as a source
        return self._tool_registry

    @property
    def mcp(self) -> McpHost:
        """The MCP host: the user's MCP servers (mcp.json in the config dir), one connection each,
        started on first use (app.kernel.mcp). Built on first use; the SDK is imported when a
        server starts."""
        if self._mcp is None:
            from app.kernel.mcp.host import McpHost

            self._mcp = McpHost(self.paths, self.secrets)
        return self._mcp

    @property
    def tool_invoker(self) -> ToolInvoker:
        """How every tool call runs: the user's permission rules, approvals, the call with its
        timeout, undo copies of file changes, the audit (app.kernel.tools.invoke). Built on first use."""
        if self._tool_invoker is None:
            if self._db is None:
                from app.kernel.errors import ConfigError

                raise ConfigError("tool calls need a started kernel")
            from app.kernel.tools.invoke import ToolInvoker

            self._tool_invoker = ToolInvoker(
                self.tool_registry, events=self.events, data_dir=self.paths.data_dir,
                approval_timeout=lambda: self.settings.approvals.timeout_s,
                keep_content=lambda: self.settings.gateway.audit_prompts)
        return self._tool_invoker

    @property
    def assistant_tools(self) -> AssistantTools:
        """The assistant popup's tools, run through the tool invoker (app.kernel.tools.assistant)."""
        if self._assistant_tools is None:
            from app.kernel.tools.assistant import AssistantTools

            self._assistant_tools = AssistantTools(self.tool_registry, lambda: self.tool_invoker, self.tool_services,
                                                   self.paths.data_dir)
        return self._assistant_tools

    def tool_services(self) -> dict[str, Any]:
        """What tools may reach of the kernel through their ToolContext (`services`), beside the
        caller's own: the personal memory service, … (a tool module names what it needs)."""
        return {"personal": self.personal,
                "documents": self.documents,  # search(query, k): the user's documents by meaning
                # file tools: the allowed folders (settings.files) and ByenatOS's own folders, kept shut
                "settings": self.settings, "paths": self.paths, "events": self.events,
                "system": self._system_control()}  # the socket, personalization, models (tools.system)

    def _system_control(self) -> Any:
        """The ByenatOS tools' narrow view of the kernel: its public calls, nothing more."""
        from app.kernel.tools.system import KernelControl

        return KernelControl(state=self.socket_state, swap_model=self.socket.swap,
                             personal=lambda: self.personal, list_models=self.list_models)

    def _check_app_budget(self, app_id: str) -> None:
        """An app's daily token and cost budgets, as the gateway checks them (BudgetExceededError)."""
        identity = self.apps.identity(app_id)
        if identity is not None:
            self.accounting.check(identity, rate=False)

    async def stop(self) -> None:
        if self._agents is not None:
            await self._agents.stop()  # runs stay pending: the next start resumes them
            self._agents = None
        if self._tool_invoker is not None:
            await self._tool_invoker.stop()  # its last audit rows, before the database closes
            self._tool_invoker = None
        if self._mcp is not None:
            await self._mcp.stop()  # every MCP server's process or connection (their configs stay)
        await self.policy.stop()
        drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            try:
                await driver.aclose()
            except Exception:  # one broken driver must not keep the others open
                log.exception("closing driver %s failed", driver.provider_id)
        await self.apps.stop()
        await self.accounting.stop()  # before the database closes: it writes the last audit rows
        if self._personal_later is not None:
            self._personal_later.cancel()
            self._personal_later = None
        if self._documents_later is not None:
            self._documents_later.cancel()
            self._documents_later = None
        if self._documents is not None:
            await self._documents.stop()  # before personal memory, which its jobs write to
        if self._personal is not None:
            await self._personal.stop()  # before the database closes: it reads its controls there
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

    def live_drivers(self) -> dict[str, Driver]:
        """The drivers created so far, by provider id (creating one just to ask it loads nothing)."""
        return dict(self._drivers)

    async def reset_driver(self, provider_id: str) -> None:
        """Drop a provider's driver so the next use picks up changed settings or keys."""
        driver = self._drivers.pop(provider_id, None)
        self.router.forget_provider(provider_id)
        if driver is not None:
            await driver.aclose()

    def list_models(self) -> list[ModelSpec]:
        return self.registry.models()

    def best_default_model(self) -> ModelSpec:
        """What the `default` socket starts with: the setting, else a local model, else any."""
        if self.settings.default_model:
            return self.registry.find_model(self.settings.default_model)
        models = [m for m in self.registry.models() if m.capabilities.chat and not m.capabilities.embeddings]
        if not models:
            raise ModelNotFoundError(
                "no model available yet: run `byenatos models scan`, or add a provider with `byenatos models add`"
            )
        # Local first (private, free), then the rest; by id for a stable choice.
        return sorted(models, key=lambda m: (not m.local, m.id))[0]

    def default_model(self) -> ModelSpec:
        """The model in the `default` socket."""
        return self.socket.plan(DEFAULT_ALIAS).primary

    async def set_default_model(self, name: str) -> ModelSpec:
        spec = self.registry.find_model(name)
        await self.socket.swap(DEFAULT_ALIAS, spec.id)
        return spec

    def socket_state(self) -> dict[str, Any]:
        """Sockets, deployment health and resident models, as JSON-ready dicts (API, CLI, UI).
        An alias away from the user's model after an automatic swap has `auto_swapped` (from,
        to, at, trigger, reason, returns); a deployment cooling down after errors has health
        "cooling" and `until`; `auto_return` is the policy's setting for coming back."""
        now = self.router.clock()
        s = self.settings.socket
        return {
            "aliases": [a.to_dict() for a in self.socket.aliases()],
            "deployments": [d.snapshot(now) for d in self.router.deployments()],
            "resident": [{"model": r.id, "provider": r.provider, "bytes": r.bytes, "leases": r.leases}
                         for r in self.residency.loaded()],
            "auto_return": {"enabled": s.auto_return, "after_s": s.return_after_s},
        }

    def plan_for(self, name: str, *, pinned: Generation | None = None) -> RoutePlan:
        """How to serve a request naming `name`: a socket alias, a model id or a bare model name."""
        if self.socket.is_alias(name):
            return self.socket.plan(name, pinned=pinned)
        spec = self.registry.find_model(name)
        return RoutePlan(tiers=[[spec]], key=spec.id)

    def resolve(self, name: str) -> tuple[Driver, ModelSpec]:
        """The primary model behind a name and its driver (what a request would try first)."""
        spec = self.plan_for(name).primary
        return self.driver(spec.provider), spec

    # -- inference -----------------------------------------------------------------------------
    async def _plan(self, name: str, pinned: Generation | None, task: str | None) -> RoutePlan:
        if task and self.socket.is_alias(name):
            await self.policy.on_workload(name or DEFAULT_ALIAS, task)  # WORKLOAD trigger
        return self.plan_for(name, pinned=pinned)

    async def chat(self, request: ChatRequest, *, app: str | None = None,
                   pinned: Generation | None = None, task: str | None = None) -> ChatResponse:
        return (await self.chat_routed(request, app=app, pinned=pinned, task=task))[0]

    async def chat_routed(self, request: ChatRequest, *, app: str | None = None, pinned: Generation | None = None,
                          task: str | None = None) -> tuple[ChatResponse, ModelSpec]:
        """`chat`, also telling which model served the request (after any failover)."""
        plan = await self._plan(request.model, pinned, task)
        started, spec, outcome, response = time.perf_counter(), plan.primary, "ok", None
        try:
            response, info = await self.router.run(plan, lambda dep: self._chat_on(dep, request))
            spec = info.deployment.spec
            if not answer_has_output(response.model_dump(include={"choices", "usage"})):
                outcome = EMPTY_ANSWER  # answered, with nothing in it: never recorded as ok
            return response, spec
        except ByenatosError as e:
            outcome = e.code
            raise
        finally:
            self.record_finished(spec, app, False, started, response.usage if response else None, outcome)

    async def stream(self, request: ChatRequest, *, app: str | None = None,
                     pinned: Generation | None = None, task: str | None = None) -> ObservedStream[ChatChunk]:
        """Chunks of the answer. Errors before the first chunk (unknown model, every candidate
        failing) raise here, so a caller can still answer with a proper status."""
        plan = await self._plan(request.model, pinned, task)
        started = time.perf_counter()
        try:
            chunks, info = await self.router.stream(plan, lambda dep: self._stream_on(dep, request))
        except ByenatosError as e:
            self.record_finished(plan.primary, app, True, started, None, e.code)
            raise
        spec = info.deployment.spec
        return ObservedStream(chunks, lambda usage, outcome: self.record_finished(spec, app, True, started, usage, outcome),
                              usage_of=chunk_usage, served_by=spec, has_output=chunk_has_output, raise_empty=True)

    # OpenAI JSON in, OpenAI JSON out: a client and a backend that both speak OpenAI need no
    # translation, so these skip the pydantic round trip where the driver can pass through.
    async def chat_raw(self, body: dict[str, Any], *, app: str | None = None,
                       task: str | None = None, legacy: bool = False, opening: Opening | None = None
                       ) -> dict[str, Any]:
        """`body` is an OpenAI chat request (already validated by the caller); answer as OpenAI JSON.
        `legacy`: an OpenAI (legacy) completions request and answer instead, routed the same way.
        `opening`: the gateway's lane began this request's first attempt (see `Router.run`)."""
        if opening is not None:
            plan, started = opening.plan, opening.started
        else:
            plan, started = await self._plan(body.get("model") or DEFAULT_ALIAS, None, task), time.perf_counter()
        spec, outcome, usage = plan.primary, "ok", None
        attempt = self._completion_on if legacy else self._chat_raw_on
        try:
            data, info = await self.router.run(plan, lambda dep: attempt(dep, body), opening=opening)
            spec, usage = info.deployment.spec, usage_of(data.get("usage"))
            if not answer_has_output(data):
                outcome = EMPTY_ANSWER  # answered, with nothing in it: never recorded as ok
            return data
        except ByenatosError as e:
            outcome = e.code
            raise
        finally:
            self.record_finished(spec, app, False, started, usage, outcome)

    async def stream_raw(self, body: dict[str, Any], *, app: str | None = None, task: str | None = None,
                         legacy: bool = False, meter: bool = False, opening: Opening | None = None
                         ) -> ObservedStream[bytes]:
        """Server-sent-event bytes of an OpenAI stream, `data: [DONE]` included, in batches of whole
        events (app.kernel.sse). `legacy`: a completions stream. `meter`: ask the backend that
        serves it for the final usage chunk the client did not ask for (budgets and the audit need
        the counts), if that backend accepts `stream_options`; decided per attempt, so a failover
        to a backend that refuses the option does not send it. `opening`: the gateway's lane
        began this request's first attempt (see `Router.stream`)."""
        if opening is not None:
            plan, started = opening.plan, opening.started
        else:
            plan, started = await self._plan(body.get("model") or DEFAULT_ALIAS, None, task), time.perf_counter()
        if legacy:
            def attempt(dep: Deployment) -> AsyncIterator[bytes]:
                return self._stream_completion_on(dep, body)
        else:
            def attempt(dep: Deployment) -> AsyncIterator[bytes]:
                return self._stream_raw_on(dep, body, meter=meter)
        try:
            events, info = await self.router.stream(plan, attempt, opening=opening)
        except ByenatosError as e:
            self.record_finished(plan.primary, app, True, started, None, e.code)
            raise
        spec = info.deployment.spec
        return ObservedStream(events, lambda usage, outcome: self.record_finished(spec, app, True, started, usage, outcome),
                              usage_of=sse_usage, served_by=spec, has_output=sse_has_output)

    async def embed(self, texts: list[str], model: str) -> EmbeddingResult:
        result, _ = await self.router.run(self.plan_for(model), lambda dep: dep.driver.embed(texts, dep.spec))
        return result

    # -- one attempt on one deployment -------------------------------------------------------
    async def _chat_on(self, dep: Deployment, request: ChatRequest) -> ChatResponse:
        if prompted_stream.applies(request, dep.spec):  # no tool calls of its own: tools in the prompt
            return await prompted_stream.chat(lambda prompted: self._chat_on(dep, prompted), request)
        if self.residency is not None and dep.driver.manages_memory:
            async with await self.residency.acquire(dep.spec, dep.driver):
                return await dep.driver.chat(request, dep.spec)
        return await dep.driver.chat(request, dep.spec)

    async def _stream_on(self, dep: Deployment, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if prompted_stream.applies(request, dep.spec):  # the calls read out of the streamed text
            async for chunk in prompted_stream.stream(lambda prompted: self._stream_on(dep, prompted), request):
                yield chunk
            return
        if self.residency is not None and dep.driver.manages_memory:
            async with await self.residency.acquire(dep.spec, dep.driver):  # held for the whole stream
                async for chunk in dep.driver.stream(request, dep.spec):
                    yield chunk
        else:
            async for chunk in dep.driver.stream(request, dep.spec):
                yield chunk

    async def _chat_raw_on(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        raw = getattr(dep.driver, "chat_raw", None)
        if raw is None or dep.driver.manages_memory or (body.get("tools") and dep.spec.capabilities.prompted_tools):
            answer = await self._chat_on(dep, ChatRequest.model_validate(body))
            return answer.model_dump(exclude_none=True)
        data: dict[str, Any] = await raw({**body, "model": dep.spec.name})
        return data

    def _stream_raw_on(self, dep: Deployment, body: dict[str, Any], *, meter: bool = False) -> AsyncIterator[bytes]:
        raw = getattr(dep.driver, "stream_raw", None)
        if raw is None or dep.driver.manages_memory or (body.get("tools") and dep.spec.capabilities.prompted_tools):
            return encode_sse(self._stream_on(dep, ChatRequest.model_validate({**body, "stream": True})))
        events: AsyncIterator[bytes] = raw(stream_wire(dep.spec.name, dep.driver, body, meter=meter))
        return events

    def _speaks_openai(self, dep: Deployment) -> bool:
        return getattr(dep.driver, "post_raw", None) is not None and not dep.driver.manages_memory

    async def _completion_on(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        if self._speaks_openai(dep):
            data: dict[str, Any] = await dep.driver.post_raw("/completions", {**body, "model": dep.spec.name})  # type: ignore[attr-defined]
            return data
        from app.kernel.compat import completions

        return completions.from_chat(await self._chat_raw_on(dep, completions.chat_body(body)))

    def _stream_completion_on(self, dep: Deployment, body: dict[str, Any]) -> AsyncIterator[bytes]:
        if self._speaks_openai(dep):
            events: AsyncIterator[bytes] = dep.driver.stream_post_raw(  # type: ignore[attr-defined]
                "/completions", {**body, "model": dep.spec.name, "stream": True})
            return events
        from app.kernel.compat import completions

        return completions.events_from_chat(self._stream_raw_on(dep, completions.chat_body(body)))

    async def _preload(self, spec: ModelSpec) -> None:
        """BACKGROUND swaps: warm the target before the socket points at it."""
        driver = self.driver(spec.provider)
        if self.residency is not None:
            await self.residency.preload(spec, driver)
        elif driver.manages_memory:
            await driver.load(spec)

    def record_finished(self, spec: ModelSpec, app: str | None, stream: bool, started: float, usage: Any,
                  outcome: str, ended: float | None = None) -> None:
        """Publish RequestFinished; `ended` (perf_counter) when it is recorded after the fact."""
        self.events.publish(RequestFinished(
            model=spec.id, provider=spec.provider, app=app, stream=stream,
            latency_ms=((time.perf_counter() if ended is None else ended) - started) * 1000,
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
        from app.kernel.models.discovery import discover

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
        from app.kernel.models import catalog
        from app.kernel.models.presets import find_preset

        preset = find_preset(provider_id)
        if preset is None or preset.local:
            return 0
        specs = [
            catalog.enrich(ModelSpec(id=model_id(provider_id, e.name), name=e.name, provider=provider_id), e)
            for e in catalog.known_models(preset.litellm_provider or preset.id)
        ]
        return self.registry.upsert_models(provider_id, specs) if specs else 0


def _available_memory() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def _enrich(spec: ModelSpec) -> ModelSpec:
    try:
        from app.kernel.models import catalog
    except ImportError:
        return spec
    return catalog.enrich(spec)
