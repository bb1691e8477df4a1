"""ToolInvoker: permission → approval → the call (its timeout, an undo keeper) → audit → outcome,
alone and under a real agent run (DBOS, a fake tool-using model over a socket)."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.kernel.agents.events import AgentStateChanged
from app.kernel.agents.process import ProcessState
from app.kernel.agents.spec import parse_agent
from app.kernel.errors import BadRequestError
from app.kernel.events import EventBus
from app.kernel.kernel import Kernel
from app.kernel.store import open_database
from app.kernel.tools.approvals import ApprovalRequested
from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, ToolRegistry
from app.kernel.tools.invoke import ToolInvoker

WORKER = 'name = "worker"\ninstructions = "Do the task."\ntools = ["file_write", "file_read"]\n'
WRITE = ("file_write", {"path": "log.txt", "content": "x\n", "mode": "append"})


def make_tools() -> ToolRegistry:
    async def echo(ctx, args):
        return {"echo": args}

    async def broken(ctx, args):
        raise ToolError("the disk is full")

    async def buggy(ctx, args):
        return 1 / 0

    async def slow(ctx, args):
        await asyncio.sleep(30)

    async def own_timeout(ctx, args):
        raise TimeoutError()

    async def bad_request(ctx, args):
        raise BadRequestError("no such folder")

    registry = ToolRegistry()
    registry.add(Tool("echo", "", {"type": "object"}, echo))
    registry.add(Tool("change", "", {"type": "object"}, echo, risk=Risk.WRITE))
    registry.add(Tool("broken", "", {"type": "object"}, broken))
    registry.add(Tool("buggy", "", {"type": "object"}, buggy))
    registry.add(Tool("slow", "", {"type": "object"}, slow, timeout_s=0.05))
    registry.add(Tool("own_timeout", "", {"type": "object"}, own_timeout))
    registry.add(Tool("bad_request", "", {"type": "object"}, bad_request))
    return registry


@pytest.fixture
async def invoker(tmp_path):
    db = open_database(tmp_path / "byenatos.sqlite3")
    inv = ToolInvoker(make_tools(), events=EventBus(), data_dir=tmp_path, approval_timeout=lambda: 0.1)
    try:
        yield inv
    finally:
        await inv.stop()
        db.close()


def ctx(tmp_path, key: str = "3:0:0") -> ToolContext:
    return ToolContext(app="agent-worker", scopes=frozenset(), workdir=tmp_path, key=key, pid=3)


async def test_an_allowed_call_runs_and_is_audited(invoker, tmp_path):
    out = await invoker.invoke("echo", {"b": 1, "a": 2}, ctx(tmp_path))
    assert out.ok and out.value == {"echo": {"b": 1, "a": 2}} and out.waited == 0
    [row] = await invoker.audit.recent()
    assert (row["app"], row["pid"], row["key"], row["tool"], row["outcome"]) == (
        "agent-worker", 3, "3:0:0", "echo", "ok")


@pytest.mark.parametrize(("tool", "status", "words"), [
    ("broken", "error", "the disk is full"),
    ("bad_request", "error", "no such folder"),
    ("buggy", "error", "buggy failed: ZeroDivisionError"),
    ("slow", "timeout", "`slow` did not finish within 0.05 s and was stopped"),
    ("own_timeout", "error", "own_timeout timed out"),
    ("nope", "error", "no tool named 'nope'"),
])
async def test_every_failure_is_an_error_result_never_a_crash(invoker, tmp_path, tool, status, words):
    out = await invoker.invoke(tool, {}, ctx(tmp_path))
    assert out.status == status and not out.ok
    assert words in out.value["error"]
    [row] = await invoker.audit.recent()
    assert row["outcome"] == status and words in row["detail"]


async def test_a_denied_tool_does_not_run_and_says_why(invoker, tmp_path):
    invoker.permissions.set("agent-worker", "echo", "deny")
    out = await invoker.invoke("echo", {}, ctx(tmp_path))
    assert out.status == "denied"
    assert out.value["error"] == ("The user does not allow agent-worker to run `echo` (rule: deny echo for "
                                  "agent-worker). Do not retry it; continue without it or ask the user.")


async def test_ask_waits_for_the_user_and_then_runs(invoker, tmp_path):
    sub = invoker.approvals.events.subscribe(accepts=lambda e: isinstance(e, ApprovalRequested))
    seen: list[tuple[bool, int | None]] = []
    invoker._approval_timeout = lambda: 30
    call = asyncio.ensure_future(invoker.invoke("change", {"x": 1}, ctx(tmp_path),
                                                on_approval=lambda w, i: seen.append((w, i))))
    event = await asyncio.wait_for(sub.queue.get(), 10)
    assert seen == [(True, event.id)] and event.arguments == '{"x":1}'
    invoker.approvals.answer(event.id, "once")
    out = await call
    assert out.ok and out.value == {"echo": {"x": 1}} and out.waited > 0
    assert seen == [(True, event.id), (False, None)]


async def test_no_answer_is_a_deny_the_model_can_act_on(invoker, tmp_path):
    out = await invoker.invoke("change", {}, ctx(tmp_path))
    assert out.status == "denied"
    assert out.value["error"] == ("The user did not approve running `change` (no answer within 0.1 s). "
                                  "Do not retry it; continue without it or ask the user.")
    [row] = await invoker.audit.recent()
    assert row["outcome"] == "denied"


async def test_the_call_gets_an_undo_keeper_bound_to_it(invoker, tmp_path):
    kept = []

    async def writer(c, args):
        kept.append(c.services["undo"])
        await c.services["undo"].keep(tmp_path / "f.txt")
        (tmp_path / "f.txt").write_text("new")
        return "written"

    invoker.registry.add(Tool("writer", "", {"type": "object"}, writer, risk=Risk.WRITE))
    invoker.permissions.set(None, "writer", "allow")
    (tmp_path / "f.txt").write_text("old")
    assert (await invoker.invoke("writer", {}, ctx(tmp_path, "3:4:1"))).ok
    assert (kept[0].pid, kept[0].key) == (3, "3:4:1")
    report = await invoker.undo.undo(3)
    assert report.restored == [str(tmp_path / "f.txt")] and (tmp_path / "f.txt").read_text() == "old"


# -- under a real agent run ---------------------------------------------------------------------
@pytest.fixture
async def agent_kernel(kernel, agent_upstream):
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    return kernel


def log_file(kernel: Kernel) -> str:
    path = kernel.paths.data_dir / "agents" / "worker" / "log.txt"
    return path.read_text() if path.exists() else ""


async def next_request(sub) -> ApprovalRequested:
    return await asyncio.wait_for(sub.queue.get(), 30)


def approvals_sub(kernel: Kernel):
    return kernel.events.subscribe(accepts=lambda e: isinstance(e, ApprovalRequested))


async def test_an_agent_waits_for_approval_then_writes(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]]
    sub = approvals_sub(agent_kernel)
    states = agent_kernel.events.subscribe(accepts=lambda e: isinstance(e, AgentStateChanged))
    proc = await agent_kernel.agents.spawn(parse_agent(WORKER), "write")
    event = await next_request(sub)
    assert (event.pid, event.tool, event.app) == (proc.pid, "file_write", proc.app)
    waiting = agent_kernel.agents.get(proc.pid)
    assert waiting.state is ProcessState.WAITING_APPROVAL
    assert f"byenatos approvals approve {event.id}" in waiting.reason
    assert log_file(agent_kernel) == ""  # nothing written before the user said yes
    agent_kernel.tool_invoker.approvals.answer(event.id, "once")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE and log_file(agent_kernel) == "x\n"
    seen = [e.state for e in (states.queue.get_nowait() for _ in range(states.queue.qsize()))]
    assert "waiting_approval" in seen
    [row] = await agent_kernel.tool_invoker.audit.recent(pid=proc.pid)
    assert row["tool"] == "file_write" and row["outcome"] == "ok" and row["arguments"] is None


async def test_a_deny_reaches_the_model_in_words_and_the_agent_goes_on(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]]
    sub = approvals_sub(agent_kernel)
    proc = await agent_kernel.agents.spawn(parse_agent(WORKER), "write")
    agent_kernel.tool_invoker.approvals.answer((await next_request(sub)).id, "deny")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE and log_file(agent_kernel) == ""
    told = agent_upstream.chat_bodies[-1]["messages"][-1]
    assert told["role"] == "tool" and "The user declined running `file_write`. Do not retry it" in told["content"]


async def test_no_answer_in_time_is_a_deny_with_the_timeout_named(agent_kernel, agent_upstream):
    agent_kernel.settings.approvals.timeout_s = 0.2
    agent_upstream.plan = [[WRITE]]
    proc = await agent_kernel.agents.spawn(parse_agent(WORKER), "write")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE and log_file(agent_kernel) == ""
    told = agent_upstream.chat_bodies[-1]["messages"][-1]["content"]
    assert "The user did not approve running `file_write` (no answer within 0.2 s). Do not retry it" in told
    # the wait for the user is not the agent's running time
    assert done.usage.wall_s < 0.2


async def test_always_allows_the_next_calls_without_asking(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE], [WRITE], [WRITE]]
    sub = approvals_sub(agent_kernel)
    proc = await agent_kernel.agents.spawn(parse_agent(WORKER), "write thrice")
    agent_kernel.tool_invoker.approvals.answer((await next_request(sub)).id, "always")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE and log_file(agent_kernel) == "x\n" * 3
    assert sub.queue.empty()  # asked once
    assert [r.to_dict()["decision"] for r in agent_kernel.tool_invoker.permissions.rules(app=proc.app)] == ["allow"]


async def test_a_pending_approval_is_asked_again_after_a_restart(home, agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]]
    sub = approvals_sub(agent_kernel)
    proc = await agent_kernel.agents.spawn(parse_agent(WORKER), "write")
    first = await next_request(sub)
    await agent_kernel.stop()  # ByenatOS goes away while the user has not answered
    kernel = await Kernel().start()
    try:
        sub = approvals_sub(kernel)
        kernel.agents  # noqa: B018 (built: resumes the unfinished agent)
        again = await next_request(sub)
        assert again.id != first.id and again.pid == proc.pid and again.tool == "file_write"
        # closed by the stop (a SIGKILL leaves it to the next start: test_approvals)
        assert kernel.tool_invoker.approvals.get(first.id)["state"] in ("cancelled", "interrupted")
        kernel.tool_invoker.approvals.answer(again.id, "once")
        done = await kernel.agents.wait(proc.pid, timeout=30)
        assert done.state is ProcessState.DONE and log_file(kernel) == "x\n"  # once, not twice
    finally:
        await kernel.stop()


async def test_undo_rolls_back_what_the_agent_wrote(agent_kernel, agent_upstream):
    agent_kernel.tool_invoker.permissions.set(None, "file_write", "allow")
    workdir = agent_kernel.paths.data_dir / "agents" / "worker"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "notes.md").write_text("my notes\n")
    agent_upstream.plan = [[("file_write", {"path": "notes.md", "content": "overwritten"})],
                           [("file_write", {"path": "sub/new.txt", "content": "new"})], [WRITE]]
    proc = await agent_kernel.agents.spawn(parse_agent(WORKER), "scribble")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE
    assert (workdir / "notes.md").read_text() == "overwritten" and (workdir / "sub" / "new.txt").exists()
    report = await agent_kernel.tool_invoker.undo.undo(proc.pid)
    assert report.changes == 3 and report.failed == []
    assert (workdir / "notes.md").read_text() == "my notes\n"
    assert not (workdir / "sub").exists() and not (workdir / "log.txt").exists()
    assert sorted(report.deleted) == [str(workdir / "log.txt"), str(workdir / "sub" / "new.txt")]
    assert json.loads(json.dumps(report.to_dict()))["restored"] == [str(workdir / "notes.md")]
