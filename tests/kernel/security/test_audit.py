"""The audit log: batched off the request path, durable once written, prompt-free by default."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import textwrap

from app.kernel.canonical import ChatRequest
from app.kernel.security.audit import AuditEntry


def entry(app: str = "a", outcome: str = "ok", **kw) -> AuditEntry:
    base = dict(
        ts=1.0,
        app=app,
        endpoint="/v1/chat/completions",
        model="p/m",
        provider="p",
        stream=False,
        outcome=outcome,
        prompt_tokens=3,
        completion_tokens=4,
        cost=0.5,
        latency_ms=1.0,
    )
    return AuditEntry(**{**base, **kw})


async def test_rows_are_written_in_batches_and_summed(kernel):
    audit = kernel.accounting.audit
    for i in range(5):
        audit.add(entry(outcome="ok" if i else "upstream_unavailable"))
    audit.add(entry(app="b"))
    assert audit.pending == 6
    usage = await audit.usage()
    assert audit.pending == 0 and audit.written >= 6
    rows = {r["app"]: r for r in usage}
    assert rows["a"]["requests"] == 5 and rows["a"]["errors"] == 1 and rows["a"]["total_tokens"] == 35
    assert rows["a"]["cost"] == 2.5 and rows["b"]["requests"] == 1


async def test_last_used_is_each_apps_latest_request(kernel):
    audit = kernel.accounting.audit
    audit.add(entry(app="a", ts=10.0))
    audit.add(entry(app="a", ts=20.0, outcome="upstream_timeout"))
    audit.add(entry(app="b", ts=15.0))
    audit.add(entry(app=None, ts=30.0))  # the kernel's own callers are no app
    assert await audit.last_used() == {
        "a": {"ts": 20.0, "outcome": "upstream_timeout"},
        "b": {"ts": 15.0, "outcome": "ok"},
    }


async def test_the_writer_flushes_on_its_own_within_the_interval(kernel):
    audit = kernel.accounting.audit
    audit.flush_interval = 0.01
    audit.add(entry())
    written = audit.written
    for _ in range(200):
        if audit.written > written:
            break
        await asyncio.sleep(0.01)  # waiting on a background thread's commit: no event to await
    assert audit.written > written


async def test_kernel_requests_are_audited_too(kernel_with_openai):
    """The CLI's chat goes through the kernel, not the gateway; its requests still leave a row."""
    await kernel_with_openai.chat(ChatRequest(model="default", messages=[{"role": "user", "content": "x"}]))
    await kernel_with_openai.accounting.settle()
    row = (await kernel_with_openai.accounting.audit.recent(limit=1))[0]
    assert row["app"] is None and row["endpoint"] == "kernel" and row["completion_tokens"] > 0


async def test_written_rows_survive_kill_9(tmp_path):
    home = tmp_path / "home"
    script = textwrap.dedent(
        """
        import asyncio, os, signal
        from app.kernel.kernel import Kernel
        from app.kernel.security.audit import AuditEntry
        async def main():
            k = await Kernel().start()
            k.accounting.audit.add(AuditEntry(ts=1.0, app="x", endpoint="/v1/chat/completions", model="m",
                provider="p", stream=False, outcome="ok", prompt_tokens=1, completion_tokens=2, cost=0.0,
                latency_ms=1.0))
            await k.accounting.audit.flush()
            print("flushed", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file"},
    )
    out, _ = await proc.communicate()
    assert b"flushed" in out and proc.returncode == -9
    con = sqlite3.connect(home / "data" / "byenatos.sqlite3")
    assert con.execute("SELECT app, completion_tokens FROM audit").fetchall() == [("x", 2)]
    con.close()


async def test_gateway_requests_are_accounted_after_the_answer_and_before_the_next_request(kernel):
    """A request in flight through the gateway (`after_answer`) is accounted after its answer
    (AFTER_ANSWER_S later, or when the gateway drains before its next request), not while the
    answer is still being written; a request from in-process code at once."""
    from app.kernel.events import RequestFinished
    from app.kernel.monitor.accounting import RequestContext, current_request

    def finished() -> RequestFinished:
        return RequestFinished(model="p/m", provider="p", app="a", stream=False, latency_ms=1.0,
                               prompt_tokens=2, completion_tokens=3, cost=0.0, outcome="ok")

    accounting = kernel.accounting
    before = accounting.processed
    ctx = RequestContext(app="a", endpoint="/v1/chat/completions", after_answer=True)
    token = current_request.set(ctx)
    try:
        kernel.events.publish(finished())
    finally:
        current_request.reset(token)
    assert ctx.accounted  # the gateway must not account it a second time
    await asyncio.sleep(0)  # a turn of the loop is not enough: the answer's client goes first
    assert accounting.processed == before and accounting.audit.pending == 0 and accounting.pending
    accounting.drain()
    assert accounting.processed == before + 1 and accounting.audit.pending == 1 and not accounting.pending

    kernel.events.publish(finished())  # no request context: the CLI, the desktop app
    assert accounting.processed == before + 2
