"""The tool-call audit: one row per call, written in batches off the call's path; a hash of the
canonical arguments always, their content only with audit_prompts; filters and paging."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from app.kernel.events import EventBus
from app.kernel.store import open_database
from app.kernel.store.tool_tables import ToolAuditRow
from app.kernel.tools.audit import ToolAudit, ToolAuditEntry, args_hash, canonical_json
from app.kernel.tools.base import Tool, ToolContext, ToolRegistry
from app.kernel.tools.invoke import ToolInvoker


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "byenatos.sqlite3")
    try:
        yield database
    finally:
        database.close()


def entry(i: int, **kw) -> ToolAuditEntry:
    base = {"ts": time.time(), "app": "agent-a", "pid": 1, "key": f"1:{i}:0", "tool": "file_read",
            "source": "builtin", "args_sha256": "0" * 64, "outcome": "ok", "duration_ms": 1.5}
    return ToolAuditEntry(**{**base, **kw})


def test_the_hash_is_of_canonical_json():
    assert canonical_json({"b": [1, {"d": 1, "c": 2}], "a": "é"}) == '{"a":"é","b":[1,{"c":2,"d":1}]}'.encode()
    assert args_hash({"b": 1, "a": 2}) == args_hash({"a": 2, "b": 1}) == hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
    assert args_hash({"a": 1}) != args_hash({"a": 2})


async def test_rows_are_written_in_batches_off_the_call_path(db):
    audit = ToolAudit(flush_interval=30)  # long: nothing is written until asked
    try:
        for i in range(5):
            audit.add(entry(i))
        assert ToolAuditRow.select().count() == 0  # adding wrote nothing
        rows = await audit.recent()  # a read writes what is pending first
        assert [r["key"] for r in rows] == [f"1:{i}:0" for i in reversed(range(5))]
        assert audit.written == 5
    finally:
        await audit.stop()


async def test_the_writer_flushes_by_itself(db):
    audit = ToolAudit(flush_interval=0.01)
    try:
        audit.add(entry(0))
        deadline = time.monotonic() + 10
        while audit.written < 1:  # nothing to await: the writer's own interval (polled, bounded)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert ToolAuditRow.select().count() == 1
    finally:
        await audit.stop()


async def test_stop_writes_what_is_left(db):
    audit = ToolAudit(flush_interval=30)
    audit.add(entry(0))
    await audit.stop()
    assert ToolAuditRow.select().count() == 1


async def test_filters_and_paging(db):
    audit = ToolAudit()
    try:
        audit.add(entry(0, app="agent-a", pid=1, tool="file_read"))
        audit.add(entry(1, app="agent-b", pid=2, tool="file_write", outcome="denied"))
        audit.add(entry(2, app="agent-a", pid=1, tool="file_write", outcome="error"))
        assert [r["key"] for r in await audit.recent(app="agent-a")] == ["1:2:0", "1:0:0"]
        assert [r["key"] for r in await audit.recent(pid=2)] == ["1:1:0"]
        assert [r["key"] for r in await audit.recent(tool="file_write", outcome="error")] == ["1:2:0"]
        first = await audit.recent(limit=2)
        rest = await audit.recent(limit=2, before=first[-1]["id"])
        assert [r["key"] for r in first + rest] == ["1:2:0", "1:1:0", "1:0:0"]
    finally:
        await audit.stop()


@pytest.mark.parametrize("keep", [False, True])
async def test_content_is_kept_only_with_audit_prompts(db, tmp_path, keep):
    async def secret(ctx, args):
        return {"text": "the user's secret"}

    registry = ToolRegistry()
    registry.add(Tool("secret", "", {"type": "object"}, secret))
    invoker = ToolInvoker(registry, events=EventBus(), data_dir=tmp_path, keep_content=lambda: keep)
    try:
        ctx = ToolContext(app="agent-a", scopes=frozenset(), workdir=tmp_path, key="9:0:0", pid=9)
        await invoker.invoke("secret", {"q": "lisbon"}, ctx)
        [row] = await invoker.audit.recent()
        assert row["args_sha256"] == args_hash({"q": "lisbon"}) and row["duration_ms"] >= 0
        if keep:
            assert (row["arguments"], row["result"]) == ('{"q":"lisbon"}', '{"text":"the user\'s secret"}')
        else:
            assert (row["arguments"], row["result"]) == (None, None)
            raw = (tmp_path / "byenatos.sqlite3").read_bytes() + b"".join(
                p.read_bytes() for p in tmp_path.glob("byenatos.sqlite3-wal"))
            assert b"the user's secret" not in raw and b"lisbon" not in raw
    finally:
        await invoker.stop()
