"""The audit of tool calls: one row per call (who, which tool, a hash of its arguments, how it
ended, how long it took), written off the call's path.

As the request audit (app.kernel.security.audit): rows wait in memory and one writer thread
inserts them in batches every `flush_interval`, so a tool call never waits for SQLite; a
`kill -9` loses at most the last interval's rows. The arguments and the result themselves are
kept only when the user turned `gateway.audit_prompts` on; otherwise only their SHA-256 is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

import orjson

from app.kernel.store.tool_tables import ToolAuditRow

log = logging.getLogger(__name__)
OUTCOMES = ("ok", "error", "denied", "timeout")


def canonical_json(arguments: Any) -> bytes:
    """The arguments as canonical JSON (sorted keys, no spaces): equal calls hash equal."""
    return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def args_hash(arguments: Any) -> str:
    return hashlib.sha256(canonical_json(arguments)).hexdigest()


@dataclass(slots=True)
class ToolAuditEntry:
    ts: float
    app: str
    pid: int | None
    key: str
    tool: str
    source: str
    args_sha256: str
    outcome: str
    duration_ms: float
    detail: str = ""
    arguments: str | None = None
    result: str | None = None


_COLUMNS = tuple(f.name for f in fields(ToolAuditEntry))
_INSERT = f"INSERT INTO tool_audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_row_of = attrgetter(*_COLUMNS)


class ToolAudit:
    def __init__(self, *, flush_interval: float = 0.5, max_batch: int = 1000) -> None:
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._pending: list[ToolAuditEntry] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer: ThreadPoolExecutor | None = None  # one thread: one connection writes, in order
        self.written = 0

    def _ensure_started(self) -> None:
        # Started by the first row, on the loop that writes it (the invoker is built lazily).
        if self._task is None:
            self._wake = asyncio.Event()
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="byenatos-tool-audit")
            self._task = asyncio.get_running_loop().create_task(self._run(), name="tool-audit-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()
        if self._writer is not None:
            await self._in_writer(_close_connection)
            self._writer.shutdown(wait=True)
            self._writer = None

    def add(self, entry: ToolAuditEntry) -> None:
        self._ensure_started()
        self._pending.append(entry)
        if len(self._pending) >= self.max_batch and self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a full disk must not end the writer; the rows stay pending and retry
                log.exception("writing the tool-call audit failed")

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._in_writer(_insert, batch)
        except BaseException:
            self._pending[:0] = batch
            raise
        self.written += len(batch)

    async def _in_writer(self, func: Any, *args: Any) -> Any:
        if self._writer is None:
            return func(*args)
        return await asyncio.get_running_loop().run_in_executor(self._writer, func, *args)

    async def recent(self, *, limit: int = 100, app: str | None = None, pid: int | None = None,
                     tool: str | None = None, outcome: str | None = None, before: int | None = None
                     ) -> list[dict[str, Any]]:
        """The latest rows first (every row added so far included); `before`: ids below it (paging)."""
        await self.flush()
        return await self._in_writer(_recent, limit, app, pid, tool, outcome, before)


def _insert(batch: list[ToolAuditEntry]) -> None:
    db = ToolAuditRow._meta.database
    with db.atomic():
        db.connection().executemany(_INSERT, map(_row_of, batch))


def _close_connection() -> None:
    ToolAuditRow._meta.database.close()


def _recent(limit: int, app: str | None, pid: int | None, tool: str | None, outcome: str | None,
            before: int | None) -> list[dict[str, Any]]:
    query = ToolAuditRow.select().order_by(ToolAuditRow.id.desc()).limit(limit)
    for column, value in ((ToolAuditRow.app, app), (ToolAuditRow.pid, pid), (ToolAuditRow.tool, tool),
                          (ToolAuditRow.outcome, outcome)):
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        query = query.where(ToolAuditRow.id < before)
    return list(query.dicts())
