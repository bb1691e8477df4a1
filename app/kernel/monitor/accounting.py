"""Accounting: every finished request feeds the audit log, the metrics and the budgets.

The kernel publishes `RequestFinished` for each request it routes, whoever asked (gateway,
CLI, app); the gateway publishes one itself for requests it refused before routing. This
module is the one consumer that turns those events into audit rows, Prometheus counters
and per-app spending.

Pairing with the HTTP request: `EventBus.publish` runs synchronously in the task serving
the request, so at publish time the gateway's `current_request` context variable is the
request that caused the event. The subscription captures it there; that gives the audit row
its endpoint (and prompt, when prompt auditing is on), lets the gateway add token counts it
read from a pass-through stream, and tells the gateway the kernel accounted the request.
For the gateway's requests the work itself runs a little after the answer has been written
(`RequestContext.after_answer`, `Accounting.after_answer`), and before anything reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.kernel.events import Event, EventBus, RequestFinished
from app.kernel.monitor.metrics import Metrics
from app.kernel.security.audit import AuditEntry, AuditLog
from app.kernel.security.limits import Limits

if TYPE_CHECKING:
    from app.kernel.models.registry import Registry

log = logging.getLogger(__name__)

# How long the bookkeeping after an answer waits (`Accounting.after_answer`). On a machine with
# few cores the client just answered needs a core to read its answer, and the upstream one to
# finish its own: bookkeeping done at once takes it from them (bench.gateway_vs_litellm, 2 vCPUs:
# ~0.1 ms of a 50 ms stream's added latency). It is done sooner whenever something would see it
# missing (`drain()`): a budget check (`check`), the audit log's readers, /metrics, `settle()`.
# Not before every request: under back-to-back load that would put it on the next request's path.
AFTER_ANSWER_S = 0.001


@dataclass(slots=True)
class RequestContext:
    """What the gateway knows about the HTTP request in flight (one per request)."""

    app: str | None
    endpoint: str
    model: str = ""  # as asked; the gateway fills in the served model where the kernel does not route
    provider: str = ""
    stream: bool = False
    prompt: str | None = None  # set only when prompt auditing is on
    prompt_tokens: int = 0  # counted by the gateway where the kernel could not (pass-through, embeddings)
    completion_tokens: int = 0
    cost: float = 0.0
    accounted: bool = False  # a RequestFinished was published for this request
    # Account after the answer is written rather than before it (the gateway sets this): the
    # audit row, metrics and budgets then cost the caller nothing. They are still done before
    # anything reads them (Accounting.drain), so a budget check sees the caller's last request.
    after_answer: bool = False
    agent_pid: int | None = None  # the external agent's run this call belongs to (X-ByenatOS-Run)


current_request: ContextVar[RequestContext | None] = ContextVar("byenatos_request", default=None)


class Accounting:
    def __init__(self, events: EventBus, registry: Registry) -> None:
        self.events = events
        self.registry = registry
        # An external agent's finished call, added to its run's usage (the agent kernel's hook).
        self.agent_usage: Callable[..., None] | None = None
        self.metrics = Metrics()
        self.limits = Limits()
        self.audit = AuditLog()
        self.audit.before_read = self.drain
        self.processed = 0
        self._sub: Any = None
        self.pending: list[tuple[Callable[..., None], tuple[Any, ...]]] = []  # see after_answer()
        self._pending_timer: asyncio.TimerHandle | None = None
        # Called first by drain(): whatever holds answered requests whose bookkeeping it has not
        # queued yet (the gateway's pass-through lane, Lane.settle) queues it then.
        self.feeders: list[Callable[[], None]] = []

    async def start(self) -> None:
        if self._sub is not None:
            return
        await self.audit.start()
        day_start = Limits.today_start(time.time())
        try:
            self.limits.seed(await self.audit.spent_since(day_start), day_start)
        except Exception:  # a damaged audit table must not stop the kernel; budgets start at zero
            log.exception("reading today's spending from the audit log failed")
        sub = self.events.subscribe(maxsize=1)

        def offer(event: Event) -> None:  # runs inside publish(), in the publisher's context
            if not isinstance(event, RequestFinished):
                return
            ctx = current_request.get()
            if ctx is not None:
                ctx.accounted = True
                if ctx.after_answer:
                    self.after_answer(self._handle_safely, event, ctx)
                    return
            self._handle_safely(event, ctx)

        # Handled right here rather than queued for a task: it is a few dict updates and a list
        # append (the audit write is batched elsewhere), cheaper than waking a consumer per
        # request, and nothing is ever dropped.
        sub.offer = offer
        self._sub = sub

    async def stop(self) -> None:
        self.drain()
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        await self.audit.stop()

    def check(self, app: Any, *, rate: bool = True) -> None:
        """The app's rate limit and budgets (`Limits.check`), with what was answered before
        counted: RateLimitError / BudgetExceededError if it may not start a request now.
        `rate=False`: the budgets only, with no side effect (see `Limits.take`)."""
        limits = app.limits
        if (self.pending or self.feeders) and (
            limits.daily_token_budget is not None or limits.daily_cost_budget is not None
        ):
            self.drain()
        self.limits.check(app, rate=rate)

    def after_answer(self, work: Callable[..., None], *args: Any) -> None:
        """Run `work(*args)` AFTER_ANSWER_S from now, or at the next `drain()` if sooner: the
        bookkeeping of a request whose answer was just written. In the order given."""
        self.pending.append((work, args))
        if self._pending_timer is None:
            self._pending_timer = asyncio.get_running_loop().call_later(AFTER_ANSWER_S, self.drain)

    def drain(self) -> None:
        """Do the bookkeeping left for after the answers now: every finished request is then
        in the metrics, the budgets and the audit queue (and the router's statistics)."""
        for feed in self.feeders:
            feed()
        if self._pending_timer is not None:
            self._pending_timer.cancel()
            self._pending_timer = None
        while self.pending:
            work, self.pending = self.pending, []
            for do, args in work:
                try:
                    do(*args)
                except Exception:  # one request's bookkeeping must not cost the others theirs
                    log.exception("bookkeeping after an answer failed: %r", do)
        if self._pending_timer is not None:  # set again by work done just now: nothing left for it
            self._pending_timer.cancel()
            self._pending_timer = None

    async def settle(self) -> None:
        """Do the pending bookkeeping and write the pending audit rows: reads after this see
        every finished request."""
        self.drain()
        await self.audit.flush()

    def _handle_safely(self, event: RequestFinished, ctx: RequestContext | None) -> None:
        try:
            self._handle(event, ctx)
        except Exception:  # accounting must never fail the request that published
            log.exception("accounting for %s failed", event)

    def _handle(self, event: Event, ctx: RequestContext | None) -> None:
        if not isinstance(event, RequestFinished):
            return
        self.processed += 1
        prompt_tokens, completion_tokens, cost = event.prompt_tokens, event.completion_tokens, event.cost
        if (
            ctx is not None
            and not (prompt_tokens or completion_tokens)
            and (ctx.prompt_tokens or ctx.completion_tokens)
        ):
            prompt_tokens, completion_tokens = ctx.prompt_tokens, ctx.completion_tokens
            cost = cost or self._cost(event.model, prompt_tokens, completion_tokens)
        self.metrics.observe(
            app=event.app,
            model=event.model or "-",
            outcome=event.outcome,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost,
            latency_ms=event.latency_ms,
        )
        self.limits.record(event.app, prompt_tokens + completion_tokens, cost, event.ts)
        if ctx is not None and ctx.agent_pid is not None and self.agent_usage is not None:
            self.agent_usage(ctx.agent_pid, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                             cost=cost)
        self.audit.add(
            AuditEntry(
                ts=event.ts,
                app=event.app,
                endpoint=ctx.endpoint if ctx else "kernel",
                model=event.model,
                provider=event.provider,
                stream=event.stream,
                outcome=event.outcome,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=cost,
                latency_ms=round(event.latency_ms, 3),
                prompt=ctx.prompt if ctx else None,
            )
        )

    def _cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        spec = self.registry.all_models().get(model)
        if spec is None:
            return 0.0
        return prompt_tokens * spec.input_cost_per_token + completion_tokens * spec.output_cost_per_token

    def gauges(self) -> dict[str, tuple[str, float]]:
        return {
            "byenatos_audit_rows_pending": (
                "Audit rows waiting for the next batch write.",
                self.audit.pending,
            ),
            "byenatos_audit_rows_written_total": ("Audit rows written since start-up.", self.audit.written),
            "byenatos_event_subscribers": (
                "Subscribers of the kernel event bus.",
                self.events.subscriber_count,
            ),
        }
