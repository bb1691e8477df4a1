"""Stored responses: what `store: true` keeps, `previous_response_id` continues, and GET/DELETE read.

Each response is one row (the response object and the canonical messages its turn added) and
its input items one row each, written in one transaction before the response is sent back, so
an acknowledged response survives the process being killed. Every read takes the calling app:
a response of another app is not found (404), exactly as an unknown id is, so ids leak nothing.

The context a response continues is the messages of its chain, oldest first: one recursive
query walks `previous` up (a chain whose older part was deleted starts where it is still
whole). Reads are short local SQLite queries made on the loop. Writes commit together (group
commit: the saves of one turn of the loop share a transaction, so under load one commit
acknowledges many responses), and a `save` returns once its transaction committed. The batch is
committed on the loop's own connection when the write lock is free at that moment (no waiting:
timeout 0), else by one writer thread, so the loop never waits for the lock (the audit writer
holds it at times, and SQLite's busy handler sleeps in milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.kernel.responses.errors import InvalidFieldError, ResponseNotFoundError
from app.kernel.store.responses_tables import ResponseInputItemRow, ResponseRow

MAX_CHAIN = 10_000  # responses walked up a chain: a guard, far beyond any window
_CHAIN = """
WITH RECURSIVE chain(id, previous, messages, depth) AS (
    SELECT id, previous, messages, 0 FROM response WHERE id = ? AND app IS ?
    UNION ALL
    SELECT r.id, r.previous, r.messages, c.depth + 1 FROM response r JOIN chain c ON r.id = c.previous
    WHERE r.app IS ? AND c.depth < ?
)
SELECT messages FROM chain ORDER BY depth DESC
"""
_INSERT = "INSERT INTO response (id, app, previous, created_at, model, body, messages) VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_ITEM = "INSERT INTO response_input_item (response_id, seq, item) VALUES (?, ?, ?)"


@dataclass(frozen=True, slots=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool

    def to_dict(self) -> dict[str, Any]:
        return {"object": "list", "data": self.data, "first_id": self.data[0]["id"] if self.data else None,
                "last_id": self.data[-1]["id"] if self.data else None, "has_more": self.has_more}


_Row = tuple[tuple[Any, ...], list[tuple[str, int, str]]]


class ResponseStore:
    """Responses in the kernel's SQLite database (the tables are bound when it is opened)."""

    def __init__(self) -> None:
        self._pending: list[tuple[_Row, asyncio.Future[None]]] = []
        self._writing: asyncio.Future[None] | None = None  # the task writing, while there is one
        self._writer: ThreadPoolExecutor | None = None
        self._here: sqlite3.Connection | None = None  # the loop's connection for writes (_write_here)

    async def save(self, response: dict[str, Any], *, app: str | None, model: str, items: list[dict[str, Any]],
                   messages: list[dict[str, Any]]) -> None:
        """Keep `response` (its input `items`, the canonical `messages` of its turn). Durable on return."""
        await self.submit(response, app=app, model=model, items=items, messages=messages)

    def submit(self, response: dict[str, Any], *, app: str | None, model: str, items: list[dict[str, Any]],
               messages: list[dict[str, Any]], body: bytes | None = None) -> asyncio.Future[None]:
        """`save` for callers in the loop's callbacks (the pass-through lane): the row is queued
        now, and the future is done once its transaction committed. `body`: the response
        already serialized (the lane sends those bytes too, so they are made once)."""
        import orjson

        rid = response["id"]
        row = ((rid, app, response.get("previous_response_id"), time.time(), model,
                (body if body is not None else orjson.dumps(response)).decode(), orjson.dumps(messages).decode()),
               [(rid, i, orjson.dumps(item).decode()) for i, item in enumerate(items)])
        done = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._writing is None:
            self._writing = asyncio.ensure_future(self._write_pending())
        return done

    async def _write_pending(self) -> None:
        try:
            await asyncio.sleep(0)  # the saves of this turn of the loop join the batch
            while self._pending:
                batch, self._pending = self._pending, []
                rows = [r for r, _ in batch]
                try:
                    if not self._write_here(rows):
                        if self._writer is None:
                            self._writer = ThreadPoolExecutor(1, thread_name_prefix="byenatos-responses")
                        await asyncio.get_running_loop().run_in_executor(self._writer, _write, rows)
                except Exception as e:  # the database refused (disk full…): every waiter hears it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(e)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writing = None

    def _write_here(self, rows: list[_Row]) -> bool:
        """Commit `rows` on the loop's own connection if the write lock is free now (True), else
        leave them to the writer thread (False). A commit of a batch here is ~0.1 ms of the
        loop; handed to the thread under load it cost ~15 ms of waiting, mostly for the GIL
        (each sqlite3 step gives it up and waits up to the 5 ms switch interval to get it back),
        which every stored response's client waited out (docs/responses.md § Performance)."""
        conn = self._here
        if conn is None:
            path = getattr(ResponseRow._meta.database, "database", None)
            if not isinstance(path, str) or not path or path.startswith(":memory:") or path.startswith("file:"):
                return False
            # timeout=0: a held write lock (the audit writer, a delete) is never waited for here.
            conn = self._here = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # as the kernel's own connections (store.db.PRAGMAS)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # locked (SQLITE_BUSY): the thread waits for it instead
            return False
        try:
            conn.executemany(_INSERT, [response for response, _ in rows])
            conn.executemany(_INSERT_ITEM, [item for _, items in rows for item in items])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return True

    async def close(self) -> None:
        """Stop the writer thread (after what it holds is written) and close its connection."""
        here, self._here = self._here, None
        if here is not None:
            here.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.get_running_loop().run_in_executor(writer, ResponseRow._meta.database.close)
            writer.shutdown(wait=False)

    def get(self, response_id: str, *, app: str | None) -> dict[str, Any]:
        row = ResponseRow.get_or_none((ResponseRow.id == response_id) & _of(app))
        if row is None:
            raise _not_found(response_id)
        body: dict[str, Any] = row.body
        return body

    def context(self, response_id: str, *, app: str | None) -> list[dict[str, Any]]:
        """The canonical messages of the chain ending at `response_id`, oldest first."""
        import orjson

        rows = ResponseRow._meta.database.execute_sql(_CHAIN, (response_id, app, app, MAX_CHAIN)).fetchall()
        if not rows:
            raise ResponseNotFoundError(f"Previous response with id {response_id!r} not found.",
                                        param="previous_response_id", code="previous_response_not_found")
        return [m for (messages,) in rows for m in orjson.loads(messages)]

    def delete(self, response_id: str, *, app: str | None) -> None:
        db = ResponseRow._meta.database
        with db.atomic("IMMEDIATE"):
            if not ResponseRow.delete().where((ResponseRow.id == response_id) & _of(app)).execute():
                raise _not_found(response_id)

    def input_items(self, response_id: str, *, app: str | None, limit: int = 20, order: str = "desc",
                    after: str | None = None, before: str | None = None) -> Page:
        """One page of the response's input items, as OpenAI pages them (`after`/`before` an item id)."""
        if not 1 <= limit <= 100:
            raise InvalidFieldError("limit must be between 1 and 100", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidFieldError("order must be 'asc' or 'desc'", param="order")
        self.get(response_id, app=app)  # not found (or not this app's) first
        items = [r.item for r in ResponseInputItemRow.select().where(ResponseInputItemRow.response == response_id)
                 .order_by(ResponseInputItemRow.seq)]
        if order == "desc":
            items.reverse()
        for cursor, name in ((after, "after"), (before, "before")):
            if cursor is not None and not any(i.get("id") == cursor for i in items):
                raise InvalidFieldError(f"{name}: no input item {cursor!r} in response {response_id}", param=name)
        if after is not None:
            items = items[next(n for n, i in enumerate(items) if i.get("id") == after) + 1:]
        if before is not None:
            items = items[:next(n for n, i in enumerate(items) if i.get("id") == before)]
            return Page(data=items[-limit:], has_more=len(items) > limit)
        return Page(data=items[:limit], has_more=len(items) > limit)


def _write(rows: list[_Row]) -> None:
    """One transaction for every response in `rows` (the writer thread). Plain SQL: peewee builds
    an INSERT in about a millisecond of Python, more than the write itself costs."""
    db = ResponseRow._meta.database
    with db.atomic("IMMEDIATE"):
        cursor = db.cursor()
        cursor.executemany(_INSERT, [response for response, _ in rows])
        cursor.executemany(_INSERT_ITEM, [item for _, items in rows for item in items])


def _of(app: str | None) -> Any:
    return ResponseRow.app.is_null() if app is None else ResponseRow.app == app


def _not_found(response_id: str) -> ResponseNotFoundError:
    return ResponseNotFoundError(f"Response with id {response_id!r} not found.", code="not_found")
