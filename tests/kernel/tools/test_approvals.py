"""Approval requests: asked on the bus, answered once / always / deny, a timeout is a deny, a
caller that goes away cancels its request, and a restart closes what was left pending."""

from __future__ import annotations

import asyncio

import pytest

from app.kernel.errors import BadRequestError, NotFoundError
from app.kernel.events import EventBus
from app.kernel.store import open_database
from app.kernel.store.tool_tables import ApprovalRow
from app.kernel.tools.approvals import (
    Answer,
    ApprovalAnswered,
    ApprovalAnsweredError,
    ApprovalHub,
    ApprovalRequested,
)
from app.kernel.tools.base import Risk, Tool
from app.kernel.tools.permissions import Decision, Permissions


async def _noop(ctx, args):
    return "ok"


WRITE = Tool("file_write", "write", {"type": "object"}, _noop, risk=Risk.WRITE)


@pytest.fixture
def db(tmp_path):
    database = open_database(tmp_path / "byenatos.sqlite3")
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def hub(db):
    return ApprovalHub(EventBus(), Permissions())


def ask(hub: ApprovalHub, *, timeout: float = 30, keep: bool = False, key: str = "7:0:0") -> asyncio.Task[Answer]:
    return asyncio.ensure_future(hub.ask(app="agent-worker", pid=7, key=key, tool=WRITE,
                                         arguments='{"path":"a.txt"}', args_sha256="ab" * 32, timeout=timeout,
                                         keep_arguments=keep))


async def requested(sub) -> ApprovalRequested:
    while True:
        event = await asyncio.wait_for(sub.queue.get(), 10)
        if isinstance(event, ApprovalRequested):
            return event


async def test_a_request_is_published_listed_and_answered_once(hub):
    sub = hub.events.subscribe()
    waiting = ask(hub)
    event = await requested(sub)
    assert (event.app, event.pid, event.tool, event.risk, event.arguments) == (
        "agent-worker", 7, "file_write", "write", '{"path":"a.txt"}')
    [pending] = hub.pending()
    assert pending["id"] == event.id and pending["state"] == "pending" and hub.waiting_for(7) == 1
    answered = hub.answer(event.id, "once")
    assert answered["state"] == "approved"
    assert await waiting is Answer.ONCE
    assert hub.pending() == [] and hub.waiting_for(7) == 0
    # answered: the arguments are no longer kept (audit_prompts off), their hash is
    row = ApprovalRow.get_by_id(event.id)
    assert row.arguments is None and row.args_sha256 == "ab" * 32
    answers = [e for e in (sub.queue.get_nowait() for _ in range(sub.queue.qsize())) if isinstance(e, ApprovalAnswered)]
    assert [(a.id, a.answer) for a in answers] == [(event.id, "once")]
    # once is once: the next call asks again
    again = ask(hub, key="7:1:0")
    second = await requested(sub)
    assert second.id != event.id
    hub.answer(second.id, "deny")
    assert await again is Answer.DENY
    assert ApprovalRow.get_by_id(second.id).state == "denied"


async def test_always_writes_an_allow_rule_for_that_app_and_tool(hub):
    sub = hub.events.subscribe()
    waiting = ask(hub)
    event = await requested(sub)
    assert hub.permissions.decide("agent-worker", WRITE).decision is Decision.ASK
    hub.answer(event.id, "always")
    assert await waiting is Answer.ALWAYS
    verdict = hub.permissions.decide("agent-worker", WRITE)
    assert verdict.decision is Decision.ALLOW and verdict.rule.note == f"approval {event.id}: always"
    assert hub.permissions.decide("agent-other", WRITE).decision is Decision.ASK
    assert Permissions().decide("agent-worker", WRITE).decision is Decision.ALLOW  # durable


async def test_no_answer_in_time_is_a_deny(hub):
    sub = hub.events.subscribe()
    assert await ask(hub, timeout=0.05, keep=True) is Answer.TIMEOUT
    event = await requested(sub)
    row = ApprovalRow.get_by_id(event.id)
    assert row.state == "expired" and row.arguments == '{"path":"a.txt"}'  # kept: audit_prompts on
    with pytest.raises(ApprovalAnsweredError, match="not pending any more"):
        hub.answer(event.id, "once")  # too late
    assert hub.pending() == []


async def test_a_caller_that_goes_away_cancels_its_request(hub):
    sub = hub.events.subscribe()
    waiting = ask(hub)
    event = await requested(sub)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert ApprovalRow.get_by_id(event.id).state == "cancelled"
    assert hub.pending() == []
    with pytest.raises(ApprovalAnsweredError):
        hub.answer(event.id, "once")


async def test_bad_answers_are_refused(hub):
    sub = hub.events.subscribe()
    waiting = ask(hub)
    event = await requested(sub)
    for bad in ("yes", "timeout", None):
        with pytest.raises(BadRequestError, match="once, always, deny"):
            hub.answer(event.id, bad)
    with pytest.raises(NotFoundError):
        hub.answer(event.id + 100, "once")
    hub.answer(event.id, "deny")
    assert await waiting is Answer.DENY
    with pytest.raises(ApprovalAnsweredError):
        hub.answer(event.id, "once")  # answered already


async def test_a_restart_closes_requests_left_pending(hub):
    sub = hub.events.subscribe()
    waiting = ask(hub)
    event = await requested(sub)
    restarted = ApprovalHub(EventBus(), Permissions())  # a new process over the same database
    assert ApprovalRow.get_by_id(event.id).state == "interrupted"
    assert restarted.pending() == []
    with pytest.raises(ApprovalAnsweredError):
        restarted.answer(event.id, "once")
    assert [r["id"] for r in restarted.recent(state="interrupted")] == [event.id]
    waiting.cancel()  # (the old process's waiter: in a real restart it died with its process)
    with pytest.raises(asyncio.CancelledError):
        await waiting
