"""The process table's writes: what a kill -9 may lose and what it may not."""

from __future__ import annotations

import sqlite3

from app.kernel.agents.process import Priority, Quotas
from app.kernel.agents.table import ProcessTable
from app.kernel.store.db import open_database


def _on_disk(path, sql: str) -> list[tuple]:
    """Read with a connection of its own: only what was committed."""
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_a_steps_log_entries_commit_with_its_tool_call_journal(tmp_path):
    path = tmp_path / "byenatos.sqlite3"
    table = ProcessTable(open_database(path))
    proc = table.create(name="a", kind="kernel", app="agent-a", priority=Priority.NORMAL, spec={}, task="t",
                        quotas=Quotas())
    table.log(proc.pid, "llm", "asked for 1 tool call")
    table.log(proc.pid, "tool", "file_list: ok")
    # Batched: not on disk yet (the flush timer has not fired, nothing acknowledged happened).
    assert _on_disk(path, "SELECT summary FROM agent_log") == []
    table.tool_started("1:0:0", proc.pid, "file_list", {})
    # The journal entry commits at once, and the pending log entries with it.
    assert [r[0] for r in _on_disk(path, "SELECT summary FROM agent_log ORDER BY seq")] == [
        "asked for 1 tool call", "file_list: ok"]
    assert _on_disk(path, "SELECT status FROM agent_tool_call") == [("started",)]
    table.log(proc.pid, "tool", "after")
    table.tool_finished("1:0:0", {"content": "[]", "ok": True})
    assert _on_disk(path, "SELECT status FROM agent_tool_call") == [("finished",)]
    assert len(_on_disk(path, "SELECT summary FROM agent_log")) == 3
