"""`byenatos tools …`, `byenatos approvals …` and `byenatos agents undo` as a user runs them: the
real entry point in its own process, in-process (nothing running) and against `byenatos serve`."""

from __future__ import annotations

import asyncio
import json
import time

from tests.cli.test_cli import byenatos, one_readable_line
from tests.cli.test_daemon_discovery import start_daemon, stop_daemon
from tests.cli.test_socket_cli import add_fake

WRITE = ("file_write", {"path": "log.txt", "content": "x\n", "mode": "append"})
WORKER = 'name = "worker"\ninstructions = "Do the task."\ntools = ["file_write", "file_read"]\n'


async def test_rules_set_list_and_clear_with_nothing_running(home):
    code, out, err = await byenatos(home, "tools", "rules")
    assert code == 0, err
    assert "no rules" in out and "file_write" in out and "file_read" in out
    code, out, err = await byenatos(home, "tools", "allow", "file_write", "--agent", "worker")
    assert (code, out.strip()) == (0, "rule set: allow file_write for agent-worker"), err
    code, out, err = await byenatos(home, "tools", "deny", "mcp:*")
    assert (code, out.strip()) == (0, "rule set: deny mcp:* for every app"), err
    code, out, _ = await byenatos(home, "tools", "rules", "--agent", "worker", "--json")
    data = json.loads(out)
    assert [(r["app"], r["tool"], r["decision"]) for r in data["rules"]] == [
        ("*", "mcp:*", "deny"), ("agent-worker", "file_write", "allow")]
    assert {t["tool"]: t["decision"] for t in data["tools"]}["file_write"] == "allow"
    code, out, _ = await byenatos(home, "tools", "clear", "file_write", "--agent", "worker")
    assert (code, out.strip()) == (0, "rule cleared: allow file_write for agent-worker")
    code, _, err = await byenatos(home, "tools", "clear", "file_write", "--agent", "worker")
    assert code == 1 and "no rule for file_write and agent-worker" in one_readable_line(err)
    code, _, err = await byenatos(home, "tools", "allow", "rm -rf")
    assert code == 1 and "is not a tool selector" in one_readable_line(err)
    code, _, err = await byenatos(home, "tools", "audit", "--limit", "0")
    assert code == 1 and "--limit" in one_readable_line(err)
    code, out, _ = await byenatos(home, "tools", "audit")
    assert (code, out.strip()) == (0, "no tool calls yet")
    code, out, _ = await byenatos(home, "approvals")
    assert code == 0 and out.strip() == ("no approval requests waiting (ByenatOS is not running: agents ask only "
                                         "while they run)")
    code, _, err = await byenatos(home, "approvals", "approve", "3")
    assert code == 1 and "no approval request 3" in one_readable_line(err)
    code, _, err = await byenatos(home, "agents", "undo", "9")
    assert code == 1 and "no agent" in one_readable_line(err).lower()


async def pending(home, deadline_s: float = 60) -> list[dict]:
    """The pending requests, once there is one (another process asks: polled, with a deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        code, out, err = await byenatos(home, "approvals", "list", "--json")
        assert code == 0, err
        rows = json.loads(out)
        if rows:
            return rows
        assert time.monotonic() < deadline, "no approval request came"
        await asyncio.sleep(0.2)


async def test_approve_always_audit_and_undo_against_the_daemon(home, agent_upstream, tmp_path, unused_tcp_port):
    await add_fake(home, agent_upstream)
    agent_upstream.plan = [[WRITE], [WRITE]]
    worker = tmp_path / "worker.toml"
    worker.write_text(WORKER)
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        code, out, err = await byenatos(home, "agents", "run", str(worker), "write twice")
        assert code == 0, err
        [request] = await pending(home)
        assert (request["tool"], request["pid"], request["app"]) == ("file_write", 1, "agent-worker")
        code, out, _ = await byenatos(home, "approvals")
        assert f"`byenatos approvals approve {request['id']}`" in out and "file_write" in out
        code, out, err = await byenatos(home, "approvals", "approve", str(request["id"]), "--always")
        assert code == 0, err
        assert out.strip() == (f"request {request['id']} (file_write for agent-worker (agent 1)): approved; "
                               "file_write is allowed for agent-worker from now on (`byenatos tools rules` lists "
                               "the rules)")
        code, out, err = await byenatos(home, "agents", "logs", "1", "--follow")  # until it ends
        assert code == 0, err
        assert "waiting approval" in out
        code, out, _ = await byenatos(home, "agents", "ps", "--all", "--json")
        assert json.loads(out)[0]["state"] == "done"
        log = home / "data" / "agents" / "worker" / "log.txt"
        assert log.read_text() == "x\nx\n"  # the second call ran without asking
        code, out, _ = await byenatos(home, "approvals", "deny", str(request["id"]))
        assert code == 1
        code, out, _ = await byenatos(home, "tools", "audit", "--pid", "1", "--json")
        rows = [json.loads(line) for line in out.splitlines()]
        assert [(r["tool"], r["outcome"]) for r in rows] == [("file_write", "ok")] * 2
        code, out, _ = await byenatos(home, "tools", "audit")
        assert out.count("file_write") == 2 and "agent-worker" in out
        code, out, _ = await byenatos(home, "agents", "undo", "1", "--dry-run")
        assert code == 0 and "log.txt" in out and "did not exist" in out
        code, out, err = await byenatos(home, "agents", "undo", "1")
        assert code == 0, err
        assert out.splitlines() == ["agent 1: 2 change(s) rolled back",
                                    f"  deleted   {log} (the agent created it)"]
        assert not log.exists()
        code, out, _ = await byenatos(home, "agents", "undo", "1")
        assert out.strip() == "agent 1 has no file changes to roll back"
    finally:
        assert await stop_daemon(daemon) == 0
