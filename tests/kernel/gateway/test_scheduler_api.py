"""/api/scheduler and the X-ByenatOS-Priority header through the real gateway, and the
scheduler end to end: a one-slot model, queued background requests, an interactive one overtaking."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.config import load_settings
from app.kernel.scheduler import Program, ProgramClass

CHAT = "/v1/chat/completions"


def ask(text: str) -> dict:
    return {"model": "default", "messages": [{"role": "user", "content": text}]}


async def test_reading_and_changing_the_scheduler_needs_admin(anon, http, admin, kernel_with_openai):
    assert (await anon.get("/api/scheduler")).status_code == 401
    assert (await http.get("/api/scheduler")).status_code == 403
    assert (await http.put("/api/scheduler", json={"policy": "fifo"})).status_code == 403
    assert (await http.post(CHAT, json=ask("hi"))).status_code == 200  # a deployment now exists
    r = await admin.get("/api/scheduler")
    assert r.status_code == 200
    state = r.json()
    assert state["policy"] == "las" and state["starvation_s"] == 30.0
    (dep,) = state["deployments"]
    assert dep["model"] == "fake/gpt-fake-large" and dep["running"] == 0
    assert dep["waiting"] == {"interactive": 0, "normal": 0, "background": 0}


async def test_put_changes_the_policy_and_keeps_it_in_the_settings(admin, kernel_with_openai):
    r = await admin.put("/api/scheduler", json={"policy": "round_robin", "starvation_s": 5})
    assert r.status_code == 200, r.text
    assert r.json()["policy"] == "round_robin" and r.json()["starvation_s"] == 5.0
    assert kernel_with_openai.router.scheduler.policy.value == "round_robin"
    saved = load_settings(kernel_with_openai.paths).scheduler
    assert (saved.policy, saved.starvation_s) == ("round_robin", 5.0)
    r = await admin.put("/api/scheduler", json={})  # nothing to change
    assert r.status_code == 200 and r.json()["policy"] == "round_robin"


@pytest.mark.parametrize(("body", "words"), [
    ({"policy": "shortest_first"}, "policy: Input should be 'fifo', 'round_robin', 'priority' or 'las'"),
    ({"policy": None}, "policy"),
    ({"starvation_s": -1}, "starvation_s: Input should be greater than 0"),
    ({"starvation_s": "30"}, "starvation_s"),
    ({"preempt": True}, "preempt: Extra inputs are not permitted"),
])
async def test_bad_scheduler_settings_are_a_400_in_the_api_format(admin, kernel_with_openai, body, words):
    r = await admin.put("/api/scheduler", json=body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]
    assert kernel_with_openai.router.scheduler.policy.value == "las"  # unchanged


async def test_a_bad_priority_header_is_a_400_in_the_callers_format(http, gateway):
    r = await http.post(CHAT, json=ask("hi"), headers={"X-ByenatOS-Priority": "urgent"})
    assert r.status_code == 400
    assert "X-ByenatOS-Priority: 'urgent' does not parse" in r.json()["error"]["message"]
    r = await http.post("/v1/messages", headers={"X-ByenatOS-Priority": "normal; priority=x"},
                        json={"model": "default", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert "X-ByenatOS-Priority" in r.json()["error"]["message"]


async def test_a_request_may_lower_itself_but_not_raise_itself(http, admin, kernel_with_openai):
    assert (await http.post(CHAT, json=ask("hi"), headers={"X-ByenatOS-Priority": "background"})).status_code == 200
    r = await http.post(CHAT, json=ask("hi"), headers={"X-ByenatOS-Priority": "interactive; priority=5"})
    assert r.status_code == 403 and "may only lower itself" in r.json()["error"]["message"]
    ok = await admin.post(CHAT, json=ask("hi"), headers={"X-ByenatOS-Priority": "interactive; priority=5"})
    assert ok.status_code == 200
    # An app that runs as an agent (a normal program) cannot claim to be interactive.
    kernel_with_openai.router.scheduler.assign("test-app", Program("agent-1", ProgramClass.NORMAL))
    r = await http.post(CHAT, json=ask("hi"), headers={"X-ByenatOS-Priority": "interactive"})
    assert r.status_code == 403 and "its program 'agent-1' runs as (normal" in r.json()["error"]["message"]


@pytest.mark.parametrize(("policy", "order"), [("las", ["popup", "bg1", "bg2"]), ("fifo", ["bg1", "bg2", "popup"])])
async def test_an_interactive_request_overtakes_queued_background_ones(
    gateway, http, admin, kernel_with_openai, openai_upstream, policy, order
):
    """A model that serves one request at a time, busy; two background requests queue, then an
    interactive one (no header: an app's requests are interactive). When the model is free
    the interactive one goes first under LAS; under FIFO it waits its turn."""
    kernel = kernel_with_openai
    assert (await admin.put("/api/scheduler", json={"policy": policy})).status_code == 200
    dep = kernel.router.deployment(kernel.default_model())
    dep.limit = 1
    holder = await dep.acquire()  # the model is busy
    queue = dep.wait_queue = kernel.router.scheduler.new_queue()
    arrived = asyncio.Event()
    push = queue.push

    def observed_push(program=None):
        waiter = push(program)
        arrived.set()
        return waiter

    queue.push = observed_push  # type: ignore[method-assign]

    async def until_waiting(count: int) -> None:
        while dep.waiting < count:
            arrived.clear()
            await arrived.wait()

    sent = []
    for n, (text, header) in enumerate([("bg1", "background"), ("bg2", "background"), ("popup", None)]):
        headers = {"X-ByenatOS-Priority": header} if header else {}
        sent.append(asyncio.create_task(http.post(CHAT, json=ask(text), headers=headers)))
        await until_waiting(n + 1)

    state = (await admin.get("/api/scheduler")).json()["deployments"][0]
    assert state["waiting"] == {"interactive": 1, "normal": 0, "background": 2} and state["running"] == 1
    dep.release(holder)
    answers = await asyncio.gather(*sent)
    assert [a.status_code for a in answers] == [200, 200, 200]
    served = [q.body["messages"][-1]["content"] for q in openai_upstream.requests if q.path == CHAT]
    assert served == order
    assert dep.in_flight == 0 and dep.waiting == 0
    programs = (await admin.get("/api/scheduler")).json()["deployments"][0]["programs"]
    assert [p["id"] for p in programs] == ["test-app"]  # one app: one program, both classes
