"""The agent runtime end to end: real DBOS runs, a real SQLite home, a fake model over a socket."""

from __future__ import annotations

import asyncio
import json

import pytest

from app.kernel.agents.events import AgentLogged
from app.kernel.agents.process import IllegalTransitionError, ProcessState
from app.kernel.agents.spec import parse_agent
from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.kernel import Kernel
from tests.fakes.upstream import Fault

WRITE = ("file_write", {"path": "log.txt", "content": "x\n", "mode": "append"})


def agent_file(name: str = "worker", *, tools: str = '["file_write", "file_read", "memory_add", "memory_search"]',
               extra: str = "") -> str:
    return f'name = "{name}"\ninstructions = "Do the task."\ntools = {tools}\n{extra}'


def side_effects(kernel: Kernel, name: str = "worker") -> str:
    path = kernel.paths.data_dir / "agents" / name / "log.txt"
    return path.read_text() if path.exists() else ""


async def test_an_agent_runs_every_tool_call_of_each_answer_then_answers(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE, ("file_read", {"path": "log.txt"})], [WRITE]]
    proc = await agent_kernel.agents.spawn(parse_agent(agent_file()), "log twice")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE
    assert done.result.startswith("Final answer.")
    assert side_effects(agent_kernel) == "x\nx\n"
    assert (done.usage.calls, done.usage.steps, done.usage.tool_calls) == (3, 3, 3)
    assert done.usage.tokens > 0 and done.started_at and done.ended_at
    kinds = [e["kind"] for e in agent_kernel.agents.logs(proc.pid)]
    assert kinds.count("llm") == 3 and kinds.count("tool") == 3
    # the second call of the first answer read what the first wrote: run in order, in one round
    reads = [b for b in agent_upstream.chat_bodies if rounds_with_tools(b) == 1]
    assert '"content":"x\\n"' in reads[0]["messages"][-1]["content"]


def rounds_with_tools(body: dict) -> int:
    return sum(1 for m in body["messages"] if m.get("role") == "assistant" and m.get("tool_calls"))


async def test_suspend_while_waiting_for_the_model_then_resume(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE], [WRITE]]
    agent_upstream.gate = asyncio.Event()
    runtime = agent_kernel.agents
    proc = await runtime.spawn(parse_agent(agent_file()), "work")
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)
    agent_upstream.gate.set()  # first answer; the next model call is held again
    agent_upstream.gate = asyncio.Event()
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)
    suspended = await runtime.suspend(proc.pid)
    assert suspended.state is ProcessState.SUSPENDED and suspended.reason == "suspended by the user"
    with pytest.raises(IllegalTransitionError, match=r"cannot suspend agent \d+: it is suspended"):
        await runtime.suspend(proc.pid)
    agent_upstream.gate.set()
    resumed = await runtime.resume(proc.pid)
    assert resumed.state in (ProcessState.READY, ProcessState.RUNNING)
    done = await runtime.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE
    assert side_effects(agent_kernel) == "x\nx\n"  # the tool call before the suspension did not run again


async def test_a_restart_resumes_unfinished_agents_without_repeating_tool_calls(home, agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE], [WRITE], [WRITE]]
    agent_upstream.gate = asyncio.Event()
    pids = [(await agent_kernel.agents.spawn(parse_agent(agent_file()), f"task {i}")).pid for i in range(3)]
    await asyncio.wait_for(agent_upstream.wait_waiting(3), 10)
    agent_upstream.gate.set()
    agent_upstream.gate = asyncio.Event()
    await asyncio.wait_for(agent_upstream.wait_waiting(3), 10)  # each made one tool call, then asked again
    assert side_effects(agent_kernel) == "x\n" * 3
    await agent_kernel.stop()  # as a crash would leave them: pending in the engine
    agent_upstream.gate.set()
    again = await Kernel().start()
    try:
        for pid in pids:
            done = await again.agents.wait(pid, timeout=30)
            assert done.state is ProcessState.DONE, done.reason
        assert side_effects(again) == "x\n" * 9  # three calls each, none repeated
    finally:
        await again.stop()


async def test_kill_ends_an_agent_for_good(agent_kernel, agent_upstream):
    agent_upstream.gate = asyncio.Event()
    agent_upstream.plan = [[WRITE]]
    proc = await agent_kernel.agents.spawn(parse_agent(agent_file()), "work")
    await asyncio.wait_for(agent_upstream.wait_waiting(1), 10)
    killed = await agent_kernel.agents.kill(proc.pid)
    assert killed.state is ProcessState.KILLED and killed.ended_at
    agent_upstream.gate.set()
    with pytest.raises(IllegalTransitionError, match="already ended"):
        await agent_kernel.agents.resume(proc.pid)
    with pytest.raises(IllegalTransitionError, match="already ended"):
        await agent_kernel.agents.kill(proc.pid)
    with pytest.raises(IllegalTransitionError):
        await agent_kernel.agents.message(proc.pid, "hello?")
    assert agent_kernel.agents.get(proc.pid).state is ProcessState.KILLED
    assert side_effects(agent_kernel) == ""


async def test_a_quota_suspends_with_the_reason_and_raising_it_resumes(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]] * 4
    runtime = agent_kernel.agents
    proc = await runtime.spawn(parse_agent(agent_file(extra="[limits]\nsteps = 2\n")), "work")
    stopped = await runtime.wait(proc.pid, timeout=30)
    assert stopped.state is ProcessState.SUSPENDED
    assert stopped.reason == "quota reached: 2 of 2 steps"
    assert stopped.usage.steps == 2 and side_effects(agent_kernel) == "x\nx\n"
    with pytest.raises(BadRequestError, match="greater than 0"):
        await runtime.set_quotas(proc.pid, {"steps": 0})
    await runtime.set_quotas(proc.pid, {"steps": 50})
    await runtime.resume(proc.pid)
    done = await runtime.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE
    assert done.usage.steps == 5 and side_effects(agent_kernel) == "x\n" * 4


async def test_a_conversation_agent_waits_for_messages(agent_kernel, agent_upstream):
    runtime = agent_kernel.agents
    spec = parse_agent(agent_file(tools="[]", extra="conversation = true\n"))
    proc = await runtime.spawn(spec, "hello")
    waiting = await runtime.wait(proc.pid, timeout=30, until=(ProcessState.WAITING_INPUT,))
    assert waiting.usage.calls == 1
    before = len(agent_upstream.requests)
    await runtime.message(proc.pid, "and now this")
    await asyncio.wait_for(agent_upstream.wait_requests(before + 1), 30)
    last = agent_upstream.chat_bodies[-1]["messages"]
    assert last[-1] == {"role": "user", "content": "and now this"}
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user"]
    await runtime.kill(proc.pid)


async def test_a_model_that_is_down_suspends_the_agent_until_resumed(agent_kernel, agent_upstream):
    agent_upstream.fault = Fault(kind="status", status=503, message="overloaded")
    runtime = agent_kernel.agents
    proc = await runtime.spawn(parse_agent(agent_file()), "work")
    stopped = await runtime.wait(proc.pid, timeout=60)
    assert stopped.state is ProcessState.SUSPENDED
    assert stopped.reason.startswith("the model failed:") and "resume to try again" in stopped.reason
    agent_upstream.fault = None
    await agent_kernel.reset_driver("fake")  # the provider fixed: its cooldown forgotten
    await runtime.resume(proc.pid)
    done = await runtime.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE


async def test_a_request_the_model_refuses_fails_the_agent(agent_kernel, agent_upstream):
    agent_upstream.fault = Fault(kind="status", status=400, message="tools are not supported by this model")
    proc = await agent_kernel.agents.spawn(parse_agent(agent_file()), "work")
    failed = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert failed.state is ProcessState.FAILED
    assert "tools are not supported" in failed.reason


async def test_agents_cannot_reach_each_others_memory_or_files(agent_kernel, agent_upstream):
    runtime = agent_kernel.agents
    agent_upstream.plan = [[("memory_add", {"highlight": "the vault code is 4711"}),
                            ("file_write", {"path": "secret.txt", "content": "4711"})]]
    alice = await runtime.spawn(parse_agent(agent_file("alice")), "remember")
    assert (await runtime.wait(alice.pid, timeout=30)).state is ProcessState.DONE
    await agent_kernel.personal.wait_vectors()

    agent_upstream.plan = [[("memory_search", {"query": "vault code"}),
                            ("file_read", {"path": "../alice/secret.txt"})]]
    results: list[str] = []

    def capture(body):
        results.extend(str(m["content"]) for m in body["messages"] if m.get("role") == "tool")
        return agent_upstream._follow_plan(body)

    agent_upstream.script = capture
    bob = await runtime.spawn(parse_agent(agent_file("bob")), "find the vault code")
    assert (await runtime.wait(bob.pid, timeout=30)).state is ProcessState.DONE
    assert results and not any("4711" in r for r in results)
    assert any("outside this agent's working folder" in r for r in results)
    # the same search by alice finds it: the record is there, bob just may not see it
    agent_upstream.plan = [[("memory_search", {"query": "vault code"})]]
    results.clear()
    again = await runtime.spawn(parse_agent(agent_file("alice")), "find it")
    assert (await runtime.wait(again.pid, timeout=30)).state is ProcessState.DONE
    assert any("4711" in r for r in results)


async def test_bad_spawns_are_refused_with_readable_errors(agent_kernel):
    runtime = agent_kernel.agents
    with pytest.raises(NotFoundError, match="no agent named 'nobody'; shipped agents: assistant, research-notes"):
        await runtime.spawn("nobody")
    with pytest.raises(BadRequestError, match="unknown tool 'rm_rf'"):
        await runtime.spawn(parse_agent(agent_file(tools='["rm_rf"]')))
    with pytest.raises(BadRequestError, match="quota 'steps' must be greater than 0"):
        await runtime.spawn(parse_agent(agent_file()), quotas={"steps": 0})
    with pytest.raises(BadRequestError, match="priority must be one of interactive, normal, background"):
        await runtime.spawn(parse_agent(agent_file()), priority="urgent")
    with pytest.raises(BadRequestError, match="may run at most 0 child agent"):
        parent = await runtime.spawn(parse_agent(agent_file(tools="[]")), "hi")
        await runtime.spawn(parse_agent(agent_file("kid", tools="[]")), "hi", parent=parent.pid)
    with pytest.raises(NotFoundError, match="no agent with pid 999"):
        runtime.get(999)
    assert all(p.name != "kid" for p in runtime.list())


async def test_the_shipped_research_agent_answers_from_the_users_notes(agent_kernel, agent_upstream):
    from app.kernel.personal.service import Caller

    await agent_kernel.personal.add({"id": "rec-lisbon", "highlight": "Flight to Lisbon on 14 May, seat 12A"},
                                    Caller.user())
    agent_upstream.plan = [[("memory_search", {"query": "Lisbon flight"})]]
    proc = await agent_kernel.agents.spawn("research-notes", "When do I fly to Lisbon?")
    done = await agent_kernel.agents.wait(proc.pid, timeout=30)
    assert done.state is ProcessState.DONE
    assert "rec-lisbon" in done.result and "14 May" in done.result  # it saw the user's record
    assert done.app == "agent-research-notes"


async def test_a_long_run_stays_inside_the_window_and_a_swap_refits_it(agent_kernel, agent_upstream):
    from app.kernel.tokens import count_message_tokens

    agent_upstream.models = [{"id": "roomy", "context_length": 8192}, {"id": "small", "context_length": 1024}]
    await agent_kernel.refresh_provider("fake")
    await agent_kernel.set_default_model("fake/roomy")
    long_write = ("file_write", {"path": "log.txt", "content": "word " * 120, "mode": "append"})
    swapped = asyncio.Event()
    sizes: list[tuple[str, int]] = []
    specs = {m.name: m for m in agent_kernel.list_models()}

    def measure(body):
        spec = specs[body["model"]]
        sizes.append((body["model"], sum(count_message_tokens(spec, m) for m in body["messages"])))
        if len(sizes) == 20 and not swapped.is_set():
            swapped.set()
        # by the calls made, not the rounds in the body: paged out, old rounds are not in it
        return [long_write] if len(sizes) <= 40 else "done writing"

    agent_upstream.script = measure
    proc = await agent_kernel.agents.spawn(parse_agent(agent_file()), "write a lot", quotas={"steps": 100})
    await swapped.wait()
    await agent_kernel.set_default_model("fake/small")  # mid-run, to a model with an eighth of the window
    done = await agent_kernel.agents.wait(proc.pid, timeout=60)
    assert done.state is ProcessState.DONE and done.usage.calls == 41, done.reason
    assert {m for m, _ in sizes} == {"roomy", "small"}
    assert all(n <= (8192 if m == "roomy" else 1024) - 256 for m, n in sizes)  # every call inside its window
    kinds = [e["kind"] for e in agent_kernel.agents.logs(proc.pid)]
    assert "page_out" in kinds


async def test_the_agents_app_budget_suspends_it_until_raised(agent_kernel, agent_upstream):
    agent_upstream.plan = [[WRITE]] * 3
    runtime = agent_kernel.agents
    first = await runtime.spawn(parse_agent(agent_file()), "once")
    assert (await runtime.wait(first.pid, timeout=30)).state is ProcessState.DONE
    used = runtime.get(first.pid).usage.tokens
    agent_kernel.apps.set_limits("agent-worker", daily_token_budget=used + 1)  # the next run passes it
    proc = await runtime.spawn(parse_agent(agent_file()), "again")
    stopped = await runtime.wait(proc.pid, timeout=30)
    assert stopped.state is ProcessState.SUSPENDED
    assert "budget" in stopped.reason and "agent-worker" in stopped.reason
    agent_kernel.apps.set_limits("agent-worker", daily_token_budget=None)
    await runtime.resume(proc.pid)
    assert (await runtime.wait(proc.pid, timeout=30)).state is ProcessState.DONE


async def test_an_agent_spawns_a_bounded_child_and_waits_for_its_answer(agent_kernel, agent_upstream):
    runtime = agent_kernel.agents
    calls: list[str] = []

    def script(body):
        system = body["messages"][0]["content"]
        if system == "Delegate.":  # the parent
            done = sum(1 for m in body["messages"] if m.get("role") == "tool")
            if done == 0:
                return [("agent_spawn", {"agent": "research-notes", "task": "find it"}),
                        ("agent_spawn", {"agent": "research-notes", "task": "and this"})]
            if done == 2:
                pid = json.loads(body["messages"][-2]["content"])["pid"]
                return [("agent_wait", {"pid": pid})]
            return f"Parent done: {body['messages'][-1]['content']}"
        calls.append(body["messages"][1]["content"])
        return "the child's answer"

    agent_upstream.script = script
    # The first child stays running (held at the model) until the parent was refused a second one.
    agent_upstream.gate = asyncio.Event()
    agent_upstream.held = lambda body: body["messages"][0]["content"] != "Delegate."
    spec = parse_agent(agent_file("boss", tools='["agent_spawn", "agent_wait"]', extra="max_children = 1\n")
                       .replace('"Do the task."', '"Delegate."'))
    refused = agent_kernel.events.subscribe(
        accepts=lambda e: isinstance(e, AgentLogged) and "may run at most 1 child agent" in e.summary)
    proc = await runtime.spawn(spec, "delegate")
    await asyncio.wait_for(refused.queue.get(), 30)  # while the first child is held at its model
    refused.close()
    agent_upstream.gate.set()
    done = await runtime.wait(proc.pid, timeout=60)
    assert done.state is ProcessState.DONE, [e["summary"] for e in runtime.logs(proc.pid)]
    children = [p for p in runtime.list() if p.parent == proc.pid]
    assert len(children) == 1 and children[0].name == "research-notes"  # the second was refused
    assert "may run at most 1 child agent" in "".join(e["summary"] for e in runtime.logs(proc.pid))
    assert '"state":"done"' in done.result and "the child's answer" in done.result
    assert calls == ["find it"]


async def test_paged_out_steps_are_summarized_by_the_model_when_the_agent_file_allows_it(agent_kernel, agent_upstream):
    from app.kernel.tokens import count_message_tokens

    agent_upstream.models = [{"id": "small", "context_length": 1024}]
    await agent_kernel.refresh_provider("fake")
    await agent_kernel.set_default_model("fake/small")
    spec_of = {m.name: m for m in agent_kernel.list_models()}["small"]
    agent_calls: list[dict] = []
    summaries: list[dict] = []

    def script(body):
        if body["messages"][0]["content"].startswith("You summarize"):
            summaries.append(body)
            return f"SUMMARY-{len(summaries)}: wrote log.txt {len(summaries)} time(s); the code word is heron"
        agent_calls.append(body)
        if len(agent_calls) <= 12:
            return [("file_write", {"path": "log.txt", "content": f"entry {len(agent_calls)} " + "word " * 80,
                                    "mode": "append"})]
        return "done writing"

    agent_upstream.script = script
    spec = parse_agent(agent_file(extra="summarize_paged = true\n"))
    proc = await agent_kernel.agents.spawn(spec, "write a lot")
    done = await agent_kernel.agents.wait(proc.pid, timeout=60)
    assert done.state is ProcessState.DONE, done.reason
    assert summaries, "the model was never asked for a summary"
    # The summary so far goes back to the summarizer with the newly paged-out steps (recursive).
    assert len(summaries) >= 2 and "Summary so far:\nSUMMARY-1" in summaries[1]["messages"][1]["content"]
    later = agent_calls[-1]
    note = next(m["content"] for m in later["messages"] if "paged out" in str(m.get("content")))
    assert f"SUMMARY-{len(summaries)}" in note and "heron" in note  # the newest summary is in the view
    assert all(sum(count_message_tokens(spec_of, m) for m in b["messages"]) <= 1024 - 256 for b in agent_calls)
    entries = [e for e in agent_kernel.agents.logs(proc.pid) if e["kind"] == "page_out" and "summary" in e["detail"]]
    assert entries and entries[-1]["detail"]["summary"].startswith(f"SUMMARY-{len(summaries)}")
    # What the summaries cost is the agent's: its usage counts the summarizer's tokens.
    assert done.usage.calls == len(agent_calls)


async def test_without_summarize_paged_nothing_is_summarized(agent_kernel, agent_upstream):
    agent_upstream.models = [{"id": "small", "context_length": 1024}]
    await agent_kernel.refresh_provider("fake")
    await agent_kernel.set_default_model("fake/small")
    asked: list[str] = []

    def script(body):
        asked.append(body["messages"][0]["content"])
        if len(asked) <= 12:
            return [("file_write", {"path": "log.txt", "content": "word " * 80, "mode": "append"})]
        return "done"

    agent_upstream.script = script
    proc = await agent_kernel.agents.spawn(parse_agent(agent_file()), "write a lot")
    assert (await agent_kernel.agents.wait(proc.pid, timeout=60)).state is ProcessState.DONE
    assert not any(s.startswith("You summarize") for s in asked)
    assert "page_out" in [e["kind"] for e in agent_kernel.agents.logs(proc.pid)]
