"""AgentRuntime: the agent kernel's public face (spawn, suspend, resume, kill, wait, message).

It owns the process table and the durable engine, and is the host the engine's steps call
back into: one model call (scheduled as the agent's program, inside its quotas, its context
paged into the window), one tool call (journaled by idempotency key). The kernel hands it the
narrow callables it needs (routing a chat request, planning a name, the personal store, the
app registry) instead of itself, so this package does not depend on the module that builds it.

Every agent is an app: kernel-run agents get an app identity of their own (`agent-<name>`),
so the gateway's budgets, audit log and memory scoping apply to them as to any app.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.agents import RUN_HEADER, context
from app.kernel.agents.events import AgentLogged, AgentStateChanged
from app.kernel.agents.process import AgentProcess, Priority, ProcessState, Quotas, Usage
from app.kernel.agents.spec import AgentSpec, find_agent
from app.kernel.agents.table import ProcessTable
from app.kernel.canonical import ChatMessage, ChatRequest, ChatResponse, ModelSpec
from app.kernel.errors import BadRequestError, ByenatosError, NotFoundError
from app.kernel.scheduler.program import Program, ProgramClass, run_as
from app.kernel.security.limits import BudgetExceededError
from app.kernel.tools.base import ToolContext, ToolError, ToolRegistry
from app.kernel.tools.builtin import builtin_tools

if TYPE_CHECKING:
    from app.kernel.events import EventBus
    from app.kernel.security.apps import AppRegistry
    from app.kernel.socket.router import RoutePlan
    from app.kernel.tools.invoke import ToolInvoker

log = logging.getLogger(__name__)

ChatRouted = Callable[..., Awaitable[tuple[ChatResponse, ModelSpec]]]
PlanFor = Callable[[str], "RoutePlan"]
RESERVE_OUTPUT = 1024  # tokens kept free for the answer when the context is fitted
MAX_TASK = 100_000
MAX_MESSAGE = 100_000
ENDED = (ProcessState.DONE, ProcessState.FAILED, ProcessState.KILLED)


RUN_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class AgentSuspendedError(ByenatosError):
    """An external agent's call while its run is suspended (by the user, or a quota)."""

    status = 409
    code = "agent_suspended"


class AgentEndedError(ByenatosError):
    """An external agent's call for a run that was killed or has ended."""

    status = 409
    code = "agent_ended"


def agent_app_id(name: str) -> str:
    return f"agent-{name}"


def program_of(proc: AgentProcess) -> Program:
    """The scheduler's program for an agent process: fair between agents, in the agent's class."""
    return Program(f"{proc.name}#{proc.pid}", ProgramClass(proc.priority.value))


class AgentRuntime:
    def __init__(self, *, db: Any, data_dir: Path, events: EventBus, apps: AppRegistry, chat_routed: ChatRouted,
                 plan_for: PlanFor, personal: Callable[[], Any], tools: ToolRegistry | None = None,
                 check_budget: Callable[[str], None] | None = None,
                 tool_services: Callable[[], dict[str, Any]] | None = None,
                 invoker: Callable[[], ToolInvoker] | None = None) -> None:
        self.table = ProcessTable(db)
        self.events = events
        self.apps = apps
        self._chat_routed = chat_routed
        self._plan_for = plan_for
        self._personal = personal
        # The agent's app's daily budgets (as the gateway checks an app's): BudgetExceededError.
        self._check_budget = check_budget
        self.tools = tools or builtin_tools()
        # What the kernel lends tools (ToolContext.services), asked for at each call.
        self._tool_services = tool_services or (lambda: {"personal": personal()})
        # Permissions, approvals, timeouts, undo copies and the audit of every tool call.
        self._invoker = invoker or functools.cache(lambda: _own_invoker(self.tools, events, data_dir))
        self.root = data_dir / "agents"
        from app.kernel.agents.engine import DurableEngine  # DurableEngine imports nothing heavy itself

        self.engine = DurableEngine(data_dir / "agents-engine.sqlite3")
        self._recovery: asyncio.Task[None] | None = None
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}  # see wait()
        self._summaries: dict[int, Any] = {}  # pid → summaries.RunningSummary (summarize_paged)

    # -- lifecycle of the runtime ---------------------------------------------------------------
    def begin(self) -> None:
        """Unfinished kernel-run agents: start the engine now (in the background), so that DBOS
        recovers them from their last completed step."""
        if self._recovery is None and any(p.kind == "kernel" for p in self.table.live()):
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        try:
            await self.engine.start(self)
        except Exception:
            log.exception("the agent engine could not start; unfinished agents were not resumed")

    async def stop(self) -> None:
        if self._recovery is not None and not self._recovery.done():
            await asyncio.wait([self._recovery], timeout=10)
        await self.engine.stop()
        self.table.flush()  # the last log entries and usage figures, before the database closes

    # -- the public API -------------------------------------------------------------------------
    async def spawn(self, agent: str | AgentSpec, task: str = "", *, quotas: dict[str, Any] | None = None,
                    priority: str | None = None, parent: int | None = None,
                    run_key: str | None = None) -> AgentProcess:
        """Start a kernel-run agent (a shipped one by name, or an agent file by path). Durable
        when this returns: it runs to its end across restarts of ByenatOS."""
        spec = find_agent(agent) if isinstance(agent, str) else agent
        if not isinstance(task, str) or len(task) > MAX_TASK:
            raise BadRequestError(f"task: a string of at most {MAX_TASK} characters")
        self.tools.check(spec.tools)
        limits = spec.quotas().merged(quotas or {}) if quotas else spec.quotas()
        try:
            klass = Priority(priority) if priority is not None else spec.priority
        except ValueError:
            raise BadRequestError(
                f"priority must be one of {', '.join(p.value for p in Priority)}, not {priority!r}") from None
        if parent is not None:
            self._check_child(parent)
        app = self._ensure_app(spec)
        proc = self.table.create(name=spec.name, kind="kernel", app=app, priority=klass,
                                 spec=spec.model_dump(mode="json"), task=task, quotas=limits, parent=parent,
                                 run_key=run_key)
        self._log(proc.pid, "state", f"spawned {spec.name}" + (f" (child of {parent})" if parent else ""),
                  {"task": task[:500]})
        self.events.publish(AgentStateChanged(pid=proc.pid, agent=proc.name, state=proc.state.value, previous=""))
        (self.root / spec.name).mkdir(parents=True, exist_ok=True)
        await self.engine.start(self)
        await self.engine.start_run(proc.pid)
        return self.table.snapshot(proc.pid)

    def get(self, pid: int) -> AgentProcess:
        return self.table.snapshot(pid)

    def list(self, *, states: list[str] | None = None, limit: int = 200) -> list[AgentProcess]:
        if states:
            known = {s.value for s in ProcessState}
            bad = [s for s in states if s not in known]
            if bad:
                raise BadRequestError(f"unknown state {bad[0]!r}; states: {', '.join(sorted(known))}")
        return self.table.list(states=states, limit=limit)

    def logs(self, pid: int, *, after: int = 0, limit: int = 1_000) -> list[dict[str, Any]]:
        return self.table.logs(pid, after=after, limit=limit)

    async def suspend(self, pid: int, reason: str = "suspended by the user") -> AgentProcess:
        proc = self._move(pid, ProcessState.SUSPENDED, action="suspend", reason=reason, strict=True)
        if proc.kind == "kernel" and self.engine.running:
            await self.engine.cancel(pid)
        return self.table.snapshot(pid)

    async def resume(self, pid: int) -> AgentProcess:
        current = self.table.get(pid)
        proc = self._move(pid, ProcessState.READY, action="resume", reason="", strict=True)
        if current.kind == "kernel":
            await self.engine.start(self)
            await self.engine.resume(pid)
        return self.table.snapshot(proc.pid)

    async def kill(self, pid: int) -> AgentProcess:
        proc = self._move(pid, ProcessState.KILLED, action="kill", reason="killed by the user", strict=True)
        for child in self.table.children(pid):
            if not child.state.terminal:
                await self.kill(child.pid)
        if proc.kind == "kernel" and self.engine.running:
            await self.engine.cancel(pid)
        return self.table.snapshot(pid)

    async def message(self, pid: int, content: str, *, sender: str = "user") -> int:
        """Send the agent a message: it reads it before its next model call (durable once this returns)."""
        if not isinstance(content, str) or not content.strip() or len(content) > MAX_MESSAGE:
            raise BadRequestError(f"message: a non-empty string of at most {MAX_MESSAGE} characters")
        proc = self.table.get(pid)
        if proc.state.terminal:
            from app.kernel.agents.process import IllegalTransitionError

            raise IllegalTransitionError(f"cannot message agent {pid}: it has already ended ({proc.state.value})")
        seq = self.table.send(pid, content, sender)
        self._log(pid, "message", f"message from {sender}: {content[:200]}", {"seq": seq})
        if proc.kind == "kernel" and self.engine.running and proc.state.live:
            await self.engine.notify(pid, seq)
        return seq

    async def set_quotas(self, pid: int, changes: dict[str, Any]) -> AgentProcess:
        if not isinstance(changes, dict) or not changes:
            raise BadRequestError("quotas: an object of limits to change, e.g. {\"steps\": 100}")
        proc = self.table.get(pid)
        quotas = proc.quotas.merged(changes)
        self._log(pid, "quota", f"quotas set to {quotas.to_dict() or 'no limits'}")
        return self.table.set_quotas(pid, quotas)

    async def wait(self, pid: int, *, timeout: float | None = None,
                   until: tuple[ProcessState, ...] = (*ENDED, ProcessState.SUSPENDED)) -> AgentProcess:
        """Until the agent is in one of `until` (by default: ended or suspended)."""
        # A future per waiter, woken by `_move` for its pid only: a bus subscription per waiter
        # would make every state change of every agent cost one filter call per waiter.
        waiters = self._waiters.setdefault(pid, [])
        try:
            async with asyncio.timeout(timeout):
                while self.table.get(pid).state not in until:
                    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    waiters.append(woken)
                    try:
                        await woken
                    finally:
                        if woken in waiters:
                            waiters.remove(woken)
                return self.table.snapshot(pid)
        finally:
            if not waiters:
                self._waiters.pop(pid, None)

    # -- external agents -------------------------------------------------------------------------
    def external_call(self, app: str, run_key: str) -> AgentProcess:
        """A gateway call of an external agent's run (`X-ByenatOS-Run: <run_key>` with `app`'s
        token): its process, spawned by its first call. Refused while the run is suspended
        (by the user or a quota) and once it has ended."""
        if not RUN_KEY.match(run_key):
            raise BadRequestError(f"{RUN_HEADER}: a run id of 1-100 letters, digits, '.', '_', ':' or '-', "
                                  f"not {run_key[:120]!r}")
        proc = self.table.by_run_key(app, run_key)
        if proc is None:
            proc = self.table.create(name=app, kind="external", app=app, priority=Priority.NORMAL, spec={},
                                     task="", quotas=Quotas(), run_key=run_key)
            self._log(proc.pid, "state", f"external run {run_key!r} of {app} began")
            self.events.publish(AgentStateChanged(pid=proc.pid, agent=proc.name, state=proc.state.value,
                                                  previous=""))
        if proc.state is ProcessState.SUSPENDED:
            raise AgentSuspendedError(f"run {run_key!r} (agent {proc.pid}) is suspended: {proc.reason}; "
                                      "the user can resume it")
        if proc.state.terminal:
            raise AgentEndedError(f"run {run_key!r} (agent {proc.pid}) has ended ({proc.state.value}); "
                                  "start a new run with another run id")
        reason = proc.quotas.exceeded(proc.usage)
        if reason is not None:
            self._move(proc.pid, ProcessState.SUSPENDED, action="suspend", reason=reason)
            raise AgentSuspendedError(f"run {run_key!r} (agent {proc.pid}) is suspended: {reason}")
        if proc.state is ProcessState.READY:
            self._move(proc.pid, ProcessState.RUNNING, action="run")
        return proc

    def external_usage(self, pid: int, *, prompt_tokens: int, completion_tokens: int, cost: float) -> None:
        """One finished call of an external run (the accounting calls this): its usage, and a
        quota reached suspends the run (its next call is refused)."""
        proc = self.table.get(pid)
        usage = self.table.add_usage(pid, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                     cost=cost)
        reason = proc.quotas.exceeded(usage)
        if reason is not None and proc.state.live:
            self._log(pid, "quota", reason)
            self._move(pid, ProcessState.SUSPENDED, action="suspend", reason=reason)

    # -- the engine's host (app.kernel.agents.workflows.RunHost) ------------------------------------
    def run_started(self, pid: int, task: asyncio.Task[Any] | None) -> dict[str, Any]:
        proc = self.table.get(pid)
        if task is not None:
            self.engine.track(pid, task)
        if proc.state in (ProcessState.SUSPENDED, *ENDED):
            # Stopped between our write and the engine's (a crash in between): stop again.
            from app.kernel.agents.workflows import RunInterrupted

            asyncio.get_running_loop().create_task(self.engine.cancel(pid, now=False))
            raise RunInterrupted()
        self._move(pid, ProcessState.RUNNING, action="run", quiet=proc.state is ProcessState.RUNNING)
        spec = proc.spec
        return {"instructions": spec.get("instructions", ""), "task": proc.task,
                "conversation": spec.get("conversation", False)}

    def run_ended(self, pid: int, result: str | None, error: BaseException | None) -> None:
        if error is not None and not isinstance(error, Exception):
            # A cancellation (a suspend, a kill, the process stopping) or DBOS saying this
            # execution no longer owns the run (a resume started another): not a failure.
            return
        proc = self.table.get(pid)
        if proc.state.terminal or proc.state is ProcessState.SUSPENDED:
            return
        if error is None:
            self._move(pid, ProcessState.DONE, action="finish", result=result or "")
            self._log(pid, "result", (result or "")[:2_000])
        else:
            reason = str(error) if isinstance(error, ByenatosError) else f"{type(error).__name__}: {error}"
            self._move(pid, ProcessState.FAILED, action="fail", reason=reason)

    def loop_host(self) -> AgentRuntime:
        return self

    # loop.Host
    def quotas(self, pid: int) -> Quotas:
        return self.table.get(pid).quotas

    def set_state(self, pid: int, state: ProcessState, reason: str = "") -> None:
        self._move(pid, state, action="run", reason=reason or None)

    def record_usage(self, pid: int, usage: Usage) -> None:
        self.table.set_usage(pid, usage)

    async def suspend_self(self, pid: int, reason: str) -> None:
        """A quota is reached: suspend, and stop this execution here (not recorded as a step)."""
        from app.kernel.agents.workflows import RunInterrupted

        self._log(pid, "quota", reason)
        self._move(pid, ProcessState.SUSPENDED, action="suspend", reason=reason)
        await self.engine.cancel(pid, now=False)
        raise RunInterrupted()

    async def model_step(self, pid: int, step: int, messages: list[dict[str, Any]], inbox_after: int
                         ) -> dict[str, Any]:
        proc = self.table.get(pid)
        spec = proc.spec
        inbox = self.table.messages_after(pid, inbox_after)
        wanted = [*messages, *({"role": "user", "content": m["content"]} for m in inbox)]
        self.set_state(pid, ProcessState.WAITING_MODEL)
        started = time.perf_counter()
        try:
            if self._check_budget is not None:
                self._check_budget(proc.app)
            target = self._plan_for(spec.get("model") or "default").primary
            reserve = min(RESERVE_OUTPUT, target.context_window // 4)
            running = self._summaries.get(pid) if spec.get("summarize_paged") else None
            fitted = context.fit(wanted, target, reserve_output=reserve, summary=running.text if running else "")
            extra_usage: dict[str, int] = {}
            if fitted.paged_out and spec.get("summarize_paged"):
                fitted, extra_usage = await self._summarize_paged(proc, wanted, fitted, target, reserve)
            if fitted.paged_out:
                self._log(pid, "page_out", f"{len(fitted.paged_out)} earlier step(s) paged out to fit "
                          f"{target.id}'s {target.context_window}-token window", {"turns": fitted.paged_out})
            if fitted.paged_in:
                self._log(pid, "page_in", f"{len(fitted.paged_in)} paged-out step(s) brought back as relevant",
                          {"turns": fitted.paged_in})
            tools = [t.schema() for t in await self.tools.resolve(spec.get("tools") or [])] or None
            request = ChatRequest(model=spec.get("model") or "default",
                                  messages=[ChatMessage.model_validate(m) for m in fitted.messages],
                                  tools=tools, temperature=spec.get("temperature"))
            # A model without tool calls of its own gets the tools in its prompt: the kernel's
            # chat path does that per attempt (tools.prompted_stream), for every caller.
            with run_as(program_of(proc)):  # scheduled as this agent's program, in its class
                answer, served = await self._chat_routed(request, app=proc.app)
        except ByenatosError as e:
            if e.retryable or isinstance(e, BudgetExceededError):
                from app.kernel.agents.workflows import RunInterrupted

                # Worth a retry later: suspend, and make this step again when resumed.
                reason = (f"{e}; raise the budget of app {proc.app!r} (or wait for tomorrow), then resume"
                          if isinstance(e, BudgetExceededError) else f"the model failed: {e}; resume to try again")
                self._log(pid, "error", reason)
                self._move(pid, ProcessState.SUSPENDED, action="suspend", reason=reason)
                await self.engine.cancel(pid, now=False)
                raise RunInterrupted() from None
            raise  # recorded: the run fails with it
        elapsed = time.perf_counter() - started
        self.set_state(pid, ProcessState.RUNNING)
        message = answer.message.model_dump(exclude_none=True)
        calls = message.get("tool_calls") or []
        usage = answer.usage.model_dump() if answer.usage else {}
        for name, spent in extra_usage.items():  # the summary's call counts as the agent's
            usage[name] = int(usage.get(name) or 0) + spent
        text = (message.get("content") or "").strip()
        summary = (f"{served.id}: " + (f"asked for {len(calls)} tool call(s): "
                                        + ", ".join((c.get("function") or {}).get("name", "?") for c in calls)
                                        if calls else text[:300] or "(no text)"))
        self._log(pid, "llm", summary, {"step": step, "model": served.id, "usage": usage,
                                        "elapsed_s": round(elapsed, 3), "tokens_in_view": fitted.tokens})
        return {"message": message, "inbox": [{"seq": m["seq"], "content": m["content"]} for m in inbox],
                "usage": usage, "cost": served.cost(answer.usage) if answer.usage else 0.0,
                "elapsed": elapsed, "model": served.id}

    async def tool_step(self, pid: int, step: int, index: int, call: dict[str, Any]) -> dict[str, Any]:
        import orjson

        from app.kernel.agents.loop import tool_result_text

        proc = self.table.get(pid)
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        key = f"{pid}:{step}:{index}"
        started = time.perf_counter()
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
            if not isinstance(arguments, dict):
                raise ToolError("the arguments must be a JSON object")
        except (orjson.JSONDecodeError, ToolError) as e:
            return self._tool_result(pid, name, {"error": f"invalid arguments: {e}"}, False, started)
        if not self.tools.allows(proc.spec.get("tools") or [], name):
            return self._tool_result(pid, name, {"error": f"this agent has no tool named {name!r}"}, False, started)
        done = self.table.tool_started(key, pid, name, arguments)
        if done is not None:  # it finished before a crash, unrecorded by the engine: not run again
            self._log(pid, "tool", f"{name}: answered from the journal (already ran)", {"key": key})
            return done
        self.set_state(pid, ProcessState.WAITING_TOOL)
        ctx = ToolContext(app=proc.app, scopes=self._memory_scopes(proc.spec), workdir=self.root / proc.name,
                          key=key, pid=pid, services={**self._tool_services(),
                                                      "spawn_child": functools.partial(self._spawn_child, pid),
                                                      "wait_child": functools.partial(self._wait_child, pid)})
        invoker = self._invoker()

        def approval(waiting: bool, request: int | None) -> None:
            # WAITING_TOOL → RUNNING → WAITING_APPROVAL (the state machine has no wait-to-wait
            # move); calls running together share the state until the last answer.
            state = self.table.get(pid).state
            if waiting and state in (ProcessState.RUNNING, ProcessState.WAITING_TOOL):
                self.set_state(pid, ProcessState.RUNNING)
                self.set_state(pid, ProcessState.WAITING_APPROVAL,
                               f"{name} needs your approval: `byenatos approvals approve {request}` (or deny)")
            elif not waiting and state is ProcessState.WAITING_APPROVAL and not invoker.approvals.waiting_for(pid):
                self.set_state(pid, ProcessState.RUNNING)  # (not after a suspend or kill: it stays so)
                self.set_state(pid, ProcessState.WAITING_TOOL)

        outcome = await invoker.invoke(name, arguments, ctx, on_approval=approval)
        value = outcome.value
        self.set_state(pid, ProcessState.RUNNING)
        # The wait for the user is not the agent's running time (its wall_s quota).
        started += outcome.waited
        result = self._tool_result(pid, name, value, outcome.ok, started, content=tool_result_text(value))
        self.table.tool_finished(key, result)
        return result

    # -- summaries of paged-out turns (agent files with summarize_paged) ---------------------------
    async def _summarize_paged(self, proc: AgentProcess, wanted: list[dict[str, Any]], fitted: context.Fitted,
                               target: ModelSpec, reserve: int) -> tuple[context.Fitted, dict[str, int]]:
        """Fold the turns that left the view for the first time into the agent's running summary
        (one call to the model serving it), and refit with it. On failure: verbatim paging."""
        from app.kernel.agents import summaries

        running = self._summaries.setdefault(proc.pid, summaries.RunningSummary())
        fresh = [g for g in fitted.paged_out if g >= running.upto]
        if not fresh:
            return fitted, {}
        groups = context.turns(wanted, context.pinned_count(wanted))
        upto = max(fresh) + 1
        messages = summaries.request_messages(running.text, [[wanted[i] for i in groups[g]] for g in
                                                             range(running.upto, upto)], target)
        request = ChatRequest(model=proc.spec.get("model") or "default",
                              messages=[ChatMessage.model_validate(m) for m in messages],
                              max_tokens=summaries.summary_budget(target), temperature=0)
        try:
            with run_as(program_of(proc)):
                answer, served = await self._chat_routed(request, app=proc.app)
        except ByenatosError as e:
            self._log(proc.pid, "page_out", f"the model could not summarize the paged-out steps ({e}); "
                      "they stay out verbatim")
            return fitted, {}
        text = answer.message.text().strip() if answer.choices else ""
        if not text:
            return fitted, {}
        running.text, running.upto = text, upto
        self._log(proc.pid, "page_out", f"{served.id} summarized steps 1-{upto} paged out of the window: "
                  f"{text[:300]}", {"summary": text, "upto": upto})
        try:
            refit = context.fit(wanted, target, reserve_output=reserve, summary=text)
        except ByenatosError:
            return fitted, {}
        spent = answer.usage.model_dump() if answer.usage else {}
        return refit, {k: int(spent.get(k) or 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}

    # -- children (the agent_spawn and agent_wait tools) -------------------------------------------
    async def _spawn_child(self, parent: int, agent: str, task: str, key: str) -> int:
        from app.kernel.agents.spec import builtin_agents
        from app.kernel.security.apps import app_slug

        shipped = builtin_agents()
        if agent not in shipped:
            raise ToolError(f"no shipped agent named {agent!r}; shipped agents: {', '.join(sorted(shipped))}")
        found = self.table.by_run_key(app_slug(agent_app_id(agent)), key)  # spawned by this call already
        if found is not None and found.parent == parent:
            return found.pid
        try:
            child = await self.spawn(shipped[agent], task, parent=parent, run_key=key)
        except BadRequestError as e:
            raise ToolError(str(e)) from None
        return child.pid

    async def _wait_child(self, parent: int, pid: int) -> dict[str, Any]:
        try:
            child = self.table.get(pid)
        except NotFoundError:
            child = None
        if child is None or child.parent != parent:
            raise ToolError(f"agent {pid} is not a child of this agent")
        done = await self.wait(pid)
        return {"pid": pid, "state": done.state.value, "result": done.result, "reason": done.reason}

    # -- helpers ---------------------------------------------------------------------------------
    def _tool_result(self, pid: int, name: str, value: Any, ok: bool, started: float, *,
                     content: str | None = None) -> dict[str, Any]:
        from app.kernel.agents.loop import tool_result_text

        text = content if content is not None else tool_result_text(value)
        self._log(pid, "tool", f"{name}: {'ok' if ok else 'error'}: {text[:300]}",
                  {"ok": ok, "elapsed_s": round(time.perf_counter() - started, 3)})
        return {"content": text, "ok": ok, "elapsed": time.perf_counter() - started}

    @staticmethod
    def _memory_scopes(spec: dict[str, Any]) -> frozenset[str]:
        grant = (spec.get("grants") or {}).get("memory", "own")
        if grant == "all":
            return frozenset({"admin"})
        if grant == "shared":
            return frozenset({"hinata:write", "hinata:read"})
        return frozenset({"hinata:write"})

    def _ensure_app(self, spec: AgentSpec) -> str:
        """The agent's app identity, registered on its first spawn."""
        from app.kernel.security.apps import app_slug

        app_id = app_slug(agent_app_id(spec.name))
        if self.apps.identity(app_id) is None:
            scopes = ["chat", "hinata:write"] + (["hinata:read"] if spec.grants.memory != "own" else [])
            self.apps.register(agent_app_id(spec.name), scopes, replace=True)
        return app_id

    def _check_child(self, parent: int) -> None:
        owner = self.table.get(parent)
        limit = int(owner.spec.get("max_children") or 0)
        running = [c for c in self.table.children(parent) if not c.state.terminal]
        if len(running) >= limit:
            raise BadRequestError(
                f"agent {parent} ({owner.name}) may run at most {limit} child agent(s) at once")

    def _move(self, pid: int, target: ProcessState, *, action: str, reason: str | None = None,
              result: str | None = None, quiet: bool = False, strict: bool = False) -> AgentProcess:
        proc, previous = self.table.transition(pid, target, action=action, reason=reason, result=result,
                                               strict=strict)
        if previous is not target:
            routine = target in (ProcessState.WAITING_MODEL, ProcessState.WAITING_TOOL) or (
                target is ProcessState.RUNNING and previous not in (ProcessState.READY, ProcessState.WAITING_INPUT))
            if not quiet and not routine:
                words = target.value.replace("_", " ") + (f": {proc.reason}" if proc.reason else "")
                self._log(pid, "state", words)
            self.events.publish(AgentStateChanged(pid=pid, agent=proc.name, state=target.value,
                                                  previous=previous.value, reason=proc.reason))
            for woken in self._waiters.get(pid, ()):
                if not woken.done():
                    woken.set_result(None)
        return proc

    def _log(self, pid: int, kind: str, summary: str, detail: dict[str, Any] | None = None) -> None:
        entry = self.table.log(pid, kind, summary, detail)
        self.events.publish(AgentLogged(pid=pid, seq=entry["seq"], kind=kind, summary=entry["summary"]))


def _own_invoker(tools: ToolRegistry, events: EventBus, data_dir: Path) -> ToolInvoker:
    """A runtime built without a kernel's invoker (tests): the defaults, its own audit."""
    from app.kernel.tools.invoke import ToolInvoker

    return ToolInvoker(tools, events=events, data_dir=data_dir)
