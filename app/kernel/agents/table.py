"""The process table in SQLite: agent rows, their logs, their inboxes and the tool-call journal.

Every write is one committed transaction (WAL, synchronous=NORMAL): what the API acknowledged
(a spawn, a message, a state change) survives a kill -9.
"""

from __future__ import annotations

import time
from typing import Any

from peewee import fn

from app.kernel.agents.process import AgentProcess, Priority, ProcessState, Quotas, Usage, check_transition
from app.kernel.errors import NotFoundError
from app.kernel.store.agent_tables import AgentLogRow, AgentMessageRow, AgentRow, AgentToolCallRow

LIVE_STATES = [s.value for s in ProcessState if s.live]


def _process(row: AgentRow) -> AgentProcess:
    return AgentProcess(
        pid=row.pid, name=row.name, kind=row.kind, state=ProcessState(row.state), app=row.app,
        priority=Priority(row.priority), parent=row.parent, task=row.task, quotas=Quotas.from_dict(row.quotas),
        usage=Usage.from_dict(row.usage), reason=row.reason, result=row.result, created_at=row.created_at,
        started_at=row.started_at, ended_at=row.ended_at, spec=row.spec,
    )


class ProcessTable:
    def __init__(self, db: Any) -> None:
        self.db = db

    # -- processes -----------------------------------------------------------------------------
    def create(self, *, name: str, kind: str, app: str, priority: Priority, spec: dict[str, Any], task: str,
               quotas: Quotas, parent: int | None = None, run_key: str | None = None) -> AgentProcess:
        row = AgentRow.create(name=name, kind=kind, app=app, priority=priority.value, spec=spec, task=task,
                              quotas=quotas.to_dict(), usage={}, state=ProcessState.READY.value, parent=parent,
                              run_key=run_key, created_at=time.time())
        return _process(row)

    def _row(self, pid: int) -> AgentRow:
        row = AgentRow.get_or_none(AgentRow.pid == pid)
        if row is None:
            raise NotFoundError(f"no agent with pid {pid}")
        return row

    def get(self, pid: int) -> AgentProcess:
        return _process(self._row(pid))

    def list(self, *, states: list[str] | None = None, parent: int | None = None, limit: int = 200
             ) -> list[AgentProcess]:
        query = AgentRow.select()
        if states:
            query = query.where(AgentRow.state.in_(states))
        if parent is not None:
            query = query.where(AgentRow.parent == parent)
        return [_process(r) for r in query.order_by(AgentRow.pid.desc()).limit(limit)]

    def live(self) -> list[AgentProcess]:
        return self.list(states=LIVE_STATES, limit=100_000)

    def by_run_key(self, app: str, run_key: str) -> AgentProcess | None:
        row = AgentRow.get_or_none((AgentRow.app == app) & (AgentRow.run_key == run_key))
        return None if row is None else _process(row)

    def transition(self, pid: int, target: ProcessState, *, action: str, reason: str | None = None,
                   result: str | None = None, strict: bool = False) -> tuple[AgentProcess, ProcessState]:
        """Move `pid` to `target` if the state machine allows it (IllegalTransitionError if not).
        Returns the process and the state it left. Already there is a no-op, unless `strict`
        (what a user asks for: suspending a suspended agent is refused, not ignored)."""
        with self.db.atomic():
            row = self._row(pid)
            current = ProcessState(row.state)
            if current is target and not strict:
                return _process(row), current
            check_transition(pid, current, target, action)
            row.state = target.value
            now = time.time()
            if target is ProcessState.RUNNING and row.started_at is None:
                row.started_at = now
            if target.terminal:
                row.ended_at = now
            if reason is not None:
                row.reason = reason
            elif target in (ProcessState.READY, ProcessState.RUNNING):
                row.reason = ""
            if result is not None:
                row.result = result
            row.save()
            return _process(row), current

    def set_usage(self, pid: int, usage: Usage) -> None:
        AgentRow.update(usage=usage.to_dict()).where(AgentRow.pid == pid).execute()

    def add_usage(self, pid: int, *, prompt_tokens: int, completion_tokens: int, cost: float) -> Usage:
        """An external agent's call, added to its process's usage."""
        with self.db.atomic():
            row = self._row(pid)
            usage = Usage.from_dict(row.usage)
            usage.prompt_tokens += prompt_tokens
            usage.completion_tokens += completion_tokens
            usage.cost += cost
            usage.calls += 1
            usage.steps += 1
            row.usage = usage.to_dict()
            row.save()
            return usage

    def set_quotas(self, pid: int, quotas: Quotas) -> AgentProcess:
        with self.db.atomic():
            row = self._row(pid)
            row.quotas = quotas.to_dict()
            row.save()
            return _process(row)

    def children(self, pid: int) -> list[AgentProcess]:
        return self.list(parent=pid, limit=10_000)

    # -- the log -------------------------------------------------------------------------------
    def log(self, pid: int, kind: str, summary: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.db.atomic():
            seq = (AgentLogRow.select(fn.MAX(AgentLogRow.seq)).where(AgentLogRow.agent == pid).scalar() or 0) + 1
            row = AgentLogRow.create(agent=pid, seq=seq, at=time.time(), kind=kind, summary=summary[:2_000],
                                     detail=detail or {})
        return _log_entry(row)

    def logs(self, pid: int, *, after: int = 0, limit: int = 1_000) -> list[dict[str, Any]]:
        self._row(pid)
        rows = (AgentLogRow.select().where((AgentLogRow.agent == pid) & (AgentLogRow.seq > after))
                .order_by(AgentLogRow.seq).limit(limit))
        return [_log_entry(r) for r in rows]

    # -- the inbox -----------------------------------------------------------------------------
    def send(self, pid: int, content: str, sender: str = "user") -> int:
        with self.db.atomic():
            seq = (AgentMessageRow.select(fn.MAX(AgentMessageRow.seq))
                   .where(AgentMessageRow.agent == pid).scalar() or 0) + 1
            AgentMessageRow.create(agent=pid, seq=seq, at=time.time(), sender=sender, content=content)
        return seq

    def messages_after(self, pid: int, after: int) -> list[dict[str, Any]]:
        rows = (AgentMessageRow.select().where((AgentMessageRow.agent == pid) & (AgentMessageRow.seq > after))
                .order_by(AgentMessageRow.seq))
        return [{"seq": r.seq, "content": r.content, "sender": r.sender, "at": r.at} for r in rows]

    # -- the tool-call journal ------------------------------------------------------------------
    def tool_started(self, key: str, pid: int, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Journal a call about to run; if the same key already finished, its result instead."""
        with self.db.atomic():
            row = AgentToolCallRow.get_or_none(AgentToolCallRow.key == key)
            if row is not None and row.status == "finished":
                return dict(row.result or {})
            AgentToolCallRow.insert(key=key, agent=pid, name=name, arguments=arguments, status="started",
                                    started_at=time.time()).on_conflict_replace().execute()
        return None

    def tool_finished(self, key: str, result: dict[str, Any]) -> None:
        (AgentToolCallRow.update(status="finished", result=result, finished_at=time.time())
         .where(AgentToolCallRow.key == key).execute())


def _log_entry(row: AgentLogRow) -> dict[str, Any]:
    return {"seq": row.seq, "at": row.at, "kind": row.kind, "summary": row.summary, "detail": row.detail}
