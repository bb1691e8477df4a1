"""The process table in SQLite: agent rows, their logs, their inboxes and the tool-call journal.

One process owns the table (the daemon or the desktop app: the one running the agents), so
the rows it touches are kept in memory and written through: reads cost nothing, and each
write is one plain SQL statement. Every write commits on its own (WAL, synchronous=NORMAL):
what the API acknowledged (a spawn, a message, a suspend) survives a kill -9. The waits inside
a step (for the model, for a tool) change many times a second across many agents; they are
shown from memory and stored as `running`, which is what a restart resumes anyway.

Written with SQL rather than peewee's query builder: building a query costs ~0.1-0.3 ms of
Python, and a step of an agent makes several (measured with bench.agents_scale). Log entries
and usage figures are written in one transaction every FLUSH_S (or before anything reads them,
or with the next acknowledged write):
with a thousand agents stepping, a commit each was most of the table's cost. They are not
acknowledged to anyone, and a resumed run recomputes its usage from its recorded steps; what
is acknowledged (a spawn, a state change, a message, the tool-call journal) commits at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from app.kernel.agents.process import AgentProcess, Priority, ProcessState, Quotas, Usage, check_transition
from app.kernel.errors import NotFoundError

LIVE_STATES = [s.value for s in ProcessState if s.live]
# What is stored for a state: the waits inside a step are stored as running (see the module).
_STORED = {ProcessState.WAITING_MODEL: ProcessState.RUNNING, ProcessState.WAITING_TOOL: ProcessState.RUNNING}
_COLUMNS = ("pid, name, kind, parent, app, state, priority, spec, task, quotas, usage, reason, result, "
            "created_at, started_at, ended_at")
_CACHE_ENDED = 2_000  # ended processes kept in memory (live ones always are)
FLUSH_S = 0.05


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _load(value: str | None) -> Any:
    return orjson.loads(value) if value else {}


def _from_row(row: tuple[Any, ...]) -> AgentProcess:
    (pid, name, kind, parent, app, state, priority, spec, task, quotas, usage, reason, result, created_at,
     started_at, ended_at) = row
    return AgentProcess(
        pid=pid, name=name, kind=kind, state=ProcessState(state), app=app, priority=Priority(priority),
        parent=parent, task=task, quotas=Quotas.from_dict(_load(quotas)), usage=Usage.from_dict(_load(usage)),
        reason=reason, result=result, created_at=created_at, started_at=started_at, ended_at=ended_at,
        spec=_load(spec),
    )


class ProcessTable:
    def __init__(self, db: Any) -> None:
        self.db = db
        self._procs: dict[int, AgentProcess] = {}
        self._log_seq: dict[int, int] = {}
        self._msg_seq: dict[int, int] = {}
        self._pending: list[tuple[str, tuple[Any, ...]]] = []  # log and usage writes, see flush()
        self._usage_rows: dict[int, int] = {}  # pid → index in _pending of its usage write
        self._flush_timer: asyncio.TimerHandle | None = None

    def _sql(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.db.execute_sql(sql, params)

    def _later(self, sql: str, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        if self._flush_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self, then: tuple[str, tuple[Any, ...]] | None = None) -> Any:
        """Write the pending log entries and usage figures, in one transaction; with `then`, that
        acknowledged write last in the same transaction (its cursor is returned)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._pending:
            return self._sql(*then) if then is not None else None
        pending, self._pending = self._pending, []
        self._usage_rows.clear()
        with self.db.atomic():
            for sql, params in pending:
                self._sql(sql, params)
            return self._sql(*then) if then is not None else None

    def _now(self, sql: str, params: tuple[Any, ...]) -> Any:
        """An acknowledged write, committed at once, with whatever log entries are pending (the
        commit is made anyway): the log of a step is on disk once the step's result is, so a
        kill -9 loses no entry of a step that counts as done."""
        return self.flush((sql, params))

    # -- processes -----------------------------------------------------------------------------
    def create(self, *, name: str, kind: str, app: str, priority: Priority, spec: dict[str, Any], task: str,
               quotas: Quotas, parent: int | None = None, run_key: str | None = None) -> AgentProcess:
        now = time.time()
        cursor = self._sql(
            "INSERT INTO agent (name, kind, parent, app, state, priority, spec, task, quotas, usage, reason, "
            "run_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', '', ?, ?)",
            (name, kind, parent, app, ProcessState.READY.value, priority.value, _json(spec), task,
             _json(quotas.to_dict()), run_key, now))
        proc = AgentProcess(pid=cursor.lastrowid, name=name, kind=kind, state=ProcessState.READY, app=app,
                            priority=priority, parent=parent, task=task, quotas=quotas, created_at=now, spec=spec)
        self._keep(proc)
        self._log_seq[proc.pid] = 0
        self._msg_seq[proc.pid] = 0
        return proc

    def _keep(self, proc: AgentProcess) -> None:
        self._procs[proc.pid] = proc
        if len(self._procs) > _CACHE_ENDED * 2:
            ended = [pid for pid, p in self._procs.items() if p.state.terminal]
            for pid in ended[: len(ended) - _CACHE_ENDED]:
                del self._procs[pid]

    def get(self, pid: int) -> AgentProcess:
        """The process (the object itself, kept up to date: callers must not change it)."""
        proc = self._procs.get(pid)
        if proc is None:
            row = self._sql(f"SELECT {_COLUMNS} FROM agent WHERE pid = ?", (pid,)).fetchone()
            if row is None:
                raise NotFoundError(f"no agent with pid {pid}")
            proc = _from_row(row)
            self._keep(proc)
        return proc

    def snapshot(self, pid: int) -> AgentProcess:
        """A copy of the process as it is now (what the API returns)."""
        proc = self.get(pid)
        return AgentProcess(**{f: getattr(proc, f) for f in AgentProcess.__dataclass_fields__}
                            | {"usage": Usage.from_dict(proc.usage.to_dict()),
                               "quotas": Quotas.from_dict(proc.quotas.to_dict())})

    def list(self, *, states: list[str] | None = None, parent: int | None = None, limit: int = 200
             ) -> list[AgentProcess]:
        where, params = [], []
        if states:
            stored = {_STORED.get(ProcessState(s), ProcessState(s)).value for s in states}
            where.append(f"state IN ({', '.join('?' * len(stored))})")
            params += sorted(stored)
        if parent is not None:
            where.append("parent = ?")
            params.append(parent)
        sql = (f"SELECT pid FROM agent {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY pid DESC LIMIT ?")
        pids = [r[0] for r in self._sql(sql, (*params, limit))]
        found = [self.snapshot(pid) for pid in pids]
        if states:  # the waits are told apart in memory only
            found = [p for p in found if p.state.value in states]
        return found

    def live(self) -> list[AgentProcess]:
        return self.list(states=LIVE_STATES, limit=100_000)

    def by_run_key(self, app: str, run_key: str) -> AgentProcess | None:
        row = self._sql("SELECT pid FROM agent WHERE app = ? AND run_key = ?", (app, run_key)).fetchone()
        return None if row is None else self.get(row[0])

    def transition(self, pid: int, target: ProcessState, *, action: str, reason: str | None = None,
                   result: str | None = None, strict: bool = False) -> tuple[AgentProcess, ProcessState]:
        """Move `pid` to `target` if the state machine allows it (IllegalTransitionError if not).
        Returns the process and the state it left. Already there is a no-op, unless `strict`
        (what a user asks for: suspending a suspended agent is refused, not ignored)."""
        proc = self.get(pid)
        current = proc.state
        if current is target and not strict:
            return proc, current
        check_transition(pid, current, target, action)
        stored_before = _STORED.get(current, current)
        proc.state = target
        now = time.time()
        changed: dict[str, Any] = {}
        if target is ProcessState.RUNNING and proc.started_at is None:
            proc.started_at = changed["started_at"] = now
        if target.terminal:
            proc.ended_at = changed["ended_at"] = now
        if reason is not None:
            proc.reason = changed["reason"] = reason
        elif target in (ProcessState.READY, ProcessState.RUNNING) and proc.reason:
            proc.reason = changed["reason"] = ""
        if result is not None:
            proc.result = changed["result"] = result
        stored = _STORED.get(target, target)
        if stored is not stored_before:
            changed["state"] = stored.value
        if changed:
            sets = ", ".join(f"{k} = ?" for k in changed)
            self._now(f"UPDATE agent SET {sets} WHERE pid = ?", (*changed.values(), pid))
        return proc, current

    def set_usage(self, pid: int, usage: Usage) -> None:
        proc = self.get(pid)
        proc.usage = Usage.from_dict(usage.to_dict())
        row = (_json(proc.usage.to_dict()), pid)
        at = self._usage_rows.get(pid)
        if at is not None:  # the pending write of this process's usage: replaced, not added
            self._pending[at] = ("UPDATE agent SET usage = ? WHERE pid = ?", row)
        else:
            self._usage_rows[pid] = len(self._pending)
            self._later("UPDATE agent SET usage = ? WHERE pid = ?", row)

    def add_usage(self, pid: int, *, prompt_tokens: int, completion_tokens: int, cost: float) -> Usage:
        """An external agent's call, added to its process's usage."""
        proc = self.get(pid)
        usage = proc.usage
        usage.prompt_tokens += prompt_tokens
        usage.completion_tokens += completion_tokens
        usage.cost += cost
        usage.calls += 1
        usage.steps += 1
        self._sql("UPDATE agent SET usage = ? WHERE pid = ?", (_json(usage.to_dict()), pid))
        return usage

    def set_quotas(self, pid: int, quotas: Quotas) -> AgentProcess:
        proc = self.get(pid)
        proc.quotas = quotas
        self._sql("UPDATE agent SET quotas = ? WHERE pid = ?", (_json(quotas.to_dict()), pid))
        return self.snapshot(pid)

    def children(self, pid: int) -> list[AgentProcess]:
        return self.list(parent=pid, limit=10_000)

    # -- the log -------------------------------------------------------------------------------
    def _next(self, counters: dict[int, int], table: str, pid: int) -> int:
        seq = counters.get(pid)
        if seq is None:
            seq = self._sql(f"SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE pid = ?", (pid,)).fetchone()[0]
        counters[pid] = seq + 1
        return seq + 1

    def log(self, pid: int, kind: str, summary: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
        self.get(pid)
        seq = self._next(self._log_seq, "agent_log", pid)
        entry = {"seq": seq, "at": time.time(), "kind": kind, "summary": summary[:2_000], "detail": detail or {}}
        self._later("INSERT INTO agent_log (pid, seq, at, kind, summary, detail) VALUES (?, ?, ?, ?, ?, ?)",
                    (pid, seq, entry["at"], kind, entry["summary"], _json(entry["detail"])))
        return entry

    def logs(self, pid: int, *, after: int = 0, limit: int = 1_000) -> list[dict[str, Any]]:
        self.get(pid)
        self.flush()
        rows = self._sql("SELECT seq, at, kind, summary, detail FROM agent_log WHERE pid = ? AND seq > ? "
                         "ORDER BY seq LIMIT ?", (pid, after, limit))
        return [{"seq": s, "at": at, "kind": k, "summary": summary, "detail": _load(d)}
                for s, at, k, summary, d in rows]

    # -- the inbox -----------------------------------------------------------------------------
    def send(self, pid: int, content: str, sender: str = "user") -> int:
        self.get(pid)
        seq = self._next(self._msg_seq, "agent_message", pid)
        self._now("INSERT INTO agent_message (pid, seq, at, sender, content) VALUES (?, ?, ?, ?, ?)",
                  (pid, seq, time.time(), sender, content))
        return seq

    def messages_after(self, pid: int, after: int) -> list[dict[str, Any]]:
        if self._msg_seq.get(pid) == after:
            return []  # nothing new: known without a query
        rows = self._sql("SELECT seq, content, sender, at FROM agent_message WHERE pid = ? AND seq > ? "
                         "ORDER BY seq", (pid, after))
        return [{"seq": s, "content": c, "sender": who, "at": at} for s, c, who, at in rows]

    # -- the tool-call journal ------------------------------------------------------------------
    def tool_started(self, key: str, pid: int, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """Journal a call about to run; if the same key already finished, its result instead."""
        row = self._sql("SELECT status, result FROM agent_tool_call WHERE key = ?", (key,)).fetchone()
        if row is not None and row[0] == "finished":
            return dict(_load(row[1]))
        self._now("INSERT OR REPLACE INTO agent_tool_call (key, pid, name, arguments, status, started_at) "
                  "VALUES (?, ?, ?, ?, 'started', ?)", (key, pid, name, _json(arguments), time.time()))
        return None

    def tool_finished(self, key: str, result: dict[str, Any]) -> None:
        self._now("UPDATE agent_tool_call SET status = 'finished', result = ?, finished_at = ? WHERE key = ?",
                  (_json(result), time.time(), key))
