"""External agents: a program calling the gateway with its token and X-ByenatOS-Run is one
process of the agent kernel, its calls accounted, its run suspendable and killable."""

from __future__ import annotations

from app.kernel.agents.process import ProcessState

BODY = {"model": "fake/gpt-fake-mini", "messages": [{"role": "user", "content": "hi"}]}


def run(key: str) -> dict[str, str]:
    return {"X-ByenatOS-Run": key}


async def test_the_calls_of_one_run_are_one_process(http, kernel_with_openai):
    for _ in range(2):
        r = await http.post("/v1/chat/completions", json=BODY, headers=run("nightly-1"))
        assert r.status_code == 200, r.text
    other = await http.post("/v1/chat/completions", json=BODY, headers=run("nightly-2"))
    assert other.status_code == 200
    await kernel_with_openai.accounting.settle()
    procs = {p.task or p.pid: p for p in kernel_with_openai.agents.list()}
    runs = [p for p in procs.values() if p.kind == "external"]
    assert len(runs) == 2 and {p.name for p in runs} == {"test-app"}
    first = max(runs, key=lambda p: p.usage.calls)
    assert first.usage.calls == 2 and first.usage.tokens > 0 and first.state is ProcessState.RUNNING
    log = kernel_with_openai.agents.logs(first.pid)
    assert "external run 'nightly-1' of test-app began" in log[0]["summary"]


async def test_a_suspended_run_is_refused_until_resumed_and_a_killed_one_for_good(http, kernel_with_openai):
    assert (await http.post("/v1/chat/completions", json=BODY, headers=run("r1"))).status_code == 200
    (proc,) = [p for p in kernel_with_openai.agents.list() if p.kind == "external"]
    await kernel_with_openai.agents.suspend(proc.pid)
    refused = await http.post("/v1/chat/completions", json=BODY, headers=run("r1"))
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "agent_suspended" and "suspended by the user" in error["message"]
    assert (await http.post("/v1/chat/completions", json=BODY)).status_code == 200  # the app itself is not
    await kernel_with_openai.agents.resume(proc.pid)
    assert (await http.post("/v1/chat/completions", json=BODY, headers=run("r1"))).status_code == 200
    await kernel_with_openai.agents.kill(proc.pid)
    ended = await http.post("/v1/chat/completions", json=BODY, headers=run("r1"))
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "agent_ended"


async def test_a_run_that_reaches_its_quota_is_suspended(http, kernel_with_openai):
    assert (await http.post("/v1/chat/completions", json=BODY, headers=run("q"))).status_code == 200
    (proc,) = [p for p in kernel_with_openai.agents.list() if p.kind == "external"]
    await kernel_with_openai.agents.set_quotas(proc.pid, {"steps": 2})
    assert (await http.post("/v1/chat/completions", json=BODY, headers=run("q"))).status_code == 200
    await kernel_with_openai.accounting.settle()
    assert kernel_with_openai.agents.get(proc.pid).state is ProcessState.SUSPENDED
    refused = await http.post("/v1/chat/completions", json=BODY, headers=run("q"))
    assert refused.status_code == 409 and "quota reached: 2 of 2 steps" in refused.json()["error"]["message"]


async def test_a_malformed_run_id_is_a_400(http):
    r = await http.post("/v1/chat/completions", json=BODY, headers=run("no spaces allowed"))
    assert r.status_code == 400 and "X-ByenatOS-Run" in r.json()["error"]["message"]
