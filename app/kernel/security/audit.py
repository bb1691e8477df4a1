"""The audit log: one row per request (app, model, tokens, cost, latency, outcome).

Rows are buffered and written in batches by one writer thread, never on the request path:
a finished request's row reaches the database within `flush_interval` (0.5 s), so a
`kill -9` can lose at most that last half second of rows; once written (one transaction
per batch, SQLite WAL) they survive it. The prompt text is kept only when the user turned
prompt auditing on; otherwise the column stays empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, TypeVar

from peewee import fn

from app.kernel.security.limits import Spending
from app.kernel.store.security_tables import AuditRow

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class AuditEntry:
    ts: float
    app: str | None
    endpoint: str
    model: str
    provider: str
    stream: bool
    outcome: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_ms: float
    prompt: str | None = None


class AuditLog:
    def __init__(self, *, flush_interval: float = 0.5, max_batch: int = 1000) -> None:
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One thread, so one SQLite connection does all audit writes, in order.
        self._writer: ThreadPoolExecutor | None = None
        self.written = 0
        # Called before every read: the accounting does the bookkeeping it left for after the
        # answers (Accounting.after_answer), so readers see every request that was answered.
        self.before_read: Callable[[], None] | None = None

    async def start(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byenatos-audit")
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._writer is not None:
            await self.flush()
            await self._in_writer(_close_connection)
            self._writer.shutdown(wait=True)
            self._writer = None

    def add(self, entry: AuditEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self.max_batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a full disk must not kill the loop; rows stay pending and retry
                log.exception("writing the audit log failed")

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._in_writer(_insert, batch)
        except BaseException:
            self._pending[:0] = batch  # keep them for the next try (or stop()'s final flush)
            raise
        self.written += len(batch)

    async def _in_writer(self, func: Any, *args: Any) -> Any:
        if self._writer is None:
            return func(*args)
        return await asyncio.get_running_loop().run_in_executor(self._writer, func, *args)

    # -- reading -----------------------------------------------------------------------------------
    def _caught_up(self) -> None:
        if self.before_read is not None:
            self.before_read()

    async def recent(self, *, limit: int = 100, app: str | None = None) -> list[dict[str, Any]]:
        self._caught_up()
        await self.flush()
        return await self._in_writer(_recent, limit, app)

    async def usage(
        self, *, since: float | None = None, until: float | None = None, by_model: bool = False
    ) -> list[dict[str, Any]]:
        self._caught_up()
        await self.flush()
        return await self._in_writer(_usage, since, until, by_model)

    async def spent_since(self, since: float) -> dict[str, Spending]:
        return await self._in_writer(_spent_since, since)

    async def last_used(self) -> dict[str, dict[str, Any]]:
        """Per app id: its latest request's time and outcome ({"ts": …, "outcome": …})."""
        self._caught_up()
        await self.flush()
        return await self._in_writer(_last_used)


_COLUMNS = tuple(f.name for f in fields(AuditEntry))  # the audit table's columns of the same names
_INSERT = f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_row_of = attrgetter(*_COLUMNS)


def _insert(batch: list[AuditEntry]) -> None:
    # One prepared statement run by sqlite3's executemany, with rows made by a C-level getter:
    # this thread then holds the GIL only for moments, between the SQLite steps (which release
    # it). peewee's insert_many (asdict and SQL text per row) took ~58 ms per 700 rows and kept
    # the event loop waiting for the GIL up to 5 ms at a time: bursts of slow requests every half
    # second under load. Now ~6 ms, with waits of 0.2 to 2.5 ms at most (bench/audit_writer.py).
    db = AuditRow._meta.database
    with db.atomic():
        db.connection().executemany(_INSERT, map(_row_of, batch))


def _close_connection() -> None:
    AuditRow._meta.database.close()


def _recent(limit: int, app: str | None) -> list[dict[str, Any]]:
    query = AuditRow.select().order_by(AuditRow.id.desc()).limit(limit)
    if app is not None:
        query = query.where(AuditRow.app == app)
    return list(query.dicts())


def _usage(since: float | None, until: float | None, by_model: bool) -> list[dict[str, Any]]:
    keys = [AuditRow.app, AuditRow.model] if by_model else [AuditRow.app]
    query = (
        AuditRow.select(
            *keys,
            fn.COUNT(AuditRow.id).alias("requests"),
            fn.SUM(AuditRow.outcome != "ok").alias("errors"),
            fn.SUM(AuditRow.prompt_tokens).alias("prompt_tokens"),
            fn.SUM(AuditRow.completion_tokens).alias("completion_tokens"),
            fn.SUM(AuditRow.cost).alias("cost"),
        )
        .group_by(*keys)
        .order_by(*keys)
    )
    if since is not None:
        query = query.where(AuditRow.ts >= since)
    if until is not None:
        query = query.where(AuditRow.ts < until)
    rows = []
    for r in query.dicts():
        r["prompt_tokens"], r["completion_tokens"] = (
            int(r["prompt_tokens"] or 0),
            int(r["completion_tokens"] or 0),
        )
        r["total_tokens"] = r["prompt_tokens"] + r["completion_tokens"]
        r["errors"], r["cost"] = int(r["errors"] or 0), float(r["cost"] or 0.0)
        rows.append(r)
    return rows


def _last_used() -> dict[str, dict[str, Any]]:
    latest = AuditRow.select(fn.MAX(AuditRow.id)).where(AuditRow.app.is_null(False)).group_by(AuditRow.app)
    query = AuditRow.select(AuditRow.app, AuditRow.ts, AuditRow.outcome).where(AuditRow.id.in_(latest))
    return {r["app"]: {"ts": r["ts"], "outcome": r["outcome"]} for r in query.dicts()}


def _spent_since(since: float) -> dict[str, Spending]:
    query = (
        AuditRow.select(
            AuditRow.app,
            fn.SUM(AuditRow.prompt_tokens + AuditRow.completion_tokens).alias("t"),
            fn.SUM(AuditRow.cost).alias("c"),
        )
        .where((AuditRow.ts >= since) & AuditRow.app.is_null(False))
        .group_by(AuditRow.app)
    )
    return {r["app"]: Spending(int(r["t"] or 0), float(r["c"] or 0.0)) for r in query.dicts()}
