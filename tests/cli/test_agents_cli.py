"""`byenatos agents …` as a user runs it: the real entry point in its own process, against a real
`byenatos serve` daemon where it matters, and in-process (nothing running) otherwise. The model
is a tool-using fake over a loopback socket, in this test's process."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from tests.cli.test_cli import byenatos, one_readable_line
from tests.cli.test_daemon_discovery import start_daemon, stop_daemon
from tests.cli.test_socket_cli import add_fake

WRITE = ("file_write", {"path": "log.txt", "content": "x\n", "mode": "append"})
WORKER = 'name = "worker"\ninstructions = "Do the task."\ntools = ["file_write", "file_read"]\n'
PS_HEADER = ["PID", "NAME", "STATE", "STEPS", "TOKENS", "COST", "AGE", "REASON"]


@pytest.fixture
async def model(home, agent_upstream):
    """The home's default socket served by the tool-using fake."""
    await add_fake(home, agent_upstream)
    code, _, err = await byenatos(home, "tools", "allow", "risk:write")  # the agents here write without asking
    assert code == 0, err
    return agent_upstream


@pytest.fixture
def worker(tmp_path):
    path = tmp_path / "worker.toml"
    path.write_text(WORKER)
    return path


def ps_rows(out: str) -> list[list[str]]:
    lines = out.strip().splitlines()
    assert lines[0].split() == PS_HEADER, out
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


def side_effects(home) -> str:
    path = home / "data" / "agents" / "worker" / "log.txt"
    return path.read_text() if path.exists() else ""


# -- nothing running: the kernel in the CLI's own process ---------------------------------------
async def test_run_a_shipped_agent_here_then_ps_and_logs(home, model):
    code, out, err = await byenatos(home, "agents", "run", "assistant", "Say", "hello.")
    assert code == 0, err
    assert out.strip() == "Final answer."  # the answer on stdout…
    assert "running here" in err and " llm " in err  # …its steps on stderr, as they happened
    assert model.chat_bodies[-1]["messages"][1] == {"role": "user", "content": "Say hello."}

    code, out, _ = await byenatos(home, "agents", "ps")
    assert code == 0 and out.strip().startswith("no agents running")
    code, out, _ = await byenatos(home, "agents", "ps", "--all")
    [row] = ps_rows(out)
    assert row[:4] == ["1", "assistant", "done", "1"]
    assert int(row[4].replace(",", "")) > 0 and row[5] == "$0.0000" and row[6].endswith("s")
    code, out, _ = await byenatos(home, "agents", "ps", "--all", "--json")
    assert json.loads(out)[0]["result"] == "Final answer."

    code, out, _ = await byenatos(home, "agents", "logs", "1")
    kinds = [line.split()[2] for line in out.strip().splitlines()]
    assert code == 0 and kinds[0] == "state" and "llm" in kinds and kinds[-1] == "result"


async def test_a_quota_stops_a_run_and_quota_resume_and_follow_finish_it(home, model, worker):
    model.plan = [[WRITE]] * 3
    code, out, err = await byenatos(home, "agents", "run", str(worker), "log", "thrice", "--quota", "steps=2")
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1] == (
        "byenatos: agent 1 (worker) suspended: quota reached: 2 of 2 steps; raise it with "
        "`byenatos agents quota 1 NAME=VALUE`, then `byenatos agents resume 1`")
    assert side_effects(home) == "x\nx\n"

    code, out, err = await byenatos(home, "agents", "quota", "1", "steps=10", "cost=none")
    assert code == 0, err
    assert out.splitlines() == ["agent 1 (worker): quotas steps=10",
                                "it is suspended (quota reached: 2 of 2 steps): `byenatos agents resume 1` resumes it"]
    code, out, err = await byenatos(home, "agents", "resume", "1")
    assert code == 0, err
    assert out.startswith("agent 1 (worker): ready\n(ByenatOS is not running")
    code, out, err = await byenatos(home, "agents", "logs", "1", "--follow")  # runs it here, to its end
    assert code == 0, err
    assert out.strip().splitlines()[-1].split()[2] == "result"
    assert side_effects(home) == "x\n" * 3  # the two before the quota did not run again
    code, out, _ = await byenatos(home, "agents", "ps", "--all")
    assert ps_rows(out)[0][:4] == ["1", "worker", "done", "4"]


async def test_bad_input_is_one_readable_line(home, model, worker, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\ninstructions = ')
    await byenatos(home, "agents", "run", "assistant", "hi")  # agent 1, done
    for args, expected in (
        (["run", "nobody"], "no shipped agent named 'nobody'; shipped agents: assistant, research-notes"),
        (["run", str(tmp_path / "missing.toml")], "no agent file at"),
        (["run", str(broken)], "not valid TOML"),
        (["run", str(worker), "--quota", "steps=0"], "quotas.steps: must be greater than 0"),
        (["run", str(worker), "--quota", "steps=-3"], "greater than 0"),
        (["run", str(worker), "--quota", "naps=3"], "quotas.naps: not a quota"),
        (["run", str(worker), "--quota", "steps"], "expected NAME=VALUE"),
        (["run", str(worker), "--quota", "steps=lots"], "'lots' is not a number"),
        (["run", str(worker), "--priority", "urgent"], "priority: one of interactive, normal, background"),
        (["kill", "999"], "no agent with pid 999"),
        (["logs", "abc"], "no agent with pid 'abc'"),
        (["resume", "1"], "cannot resume agent 1: it has already ended (done)"),
        (["message", "1", "hello?"], "cannot message agent 1: it has already ended (done)"),
        (["quota", "1", "steps=0"], "greater than 0"),
    ):
        code, out, err = await byenatos(home, "agents", *args)
        assert code == 1, (args, out, err)
        assert expected in one_readable_line(err), args
    code, out, _ = await byenatos(home, "agents", "ps", "--all")
    assert [row[0] for row in ps_rows(out)] == ["1"]  # none of the refused ones spawned anything


# -- a daemon running: the CLI talks to it -------------------------------------------------------
async def test_against_the_daemon_spawn_ps_suspend_resume_follow_kill(home, model, worker, unused_tcp_port):
    model.plan = [[WRITE]]
    model.gate = asyncio.Event()
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        code, out, err = await byenatos(home, "agents", "run", str(worker), "work", "--priority", "background")
        assert code == 0, err
        assert out.strip() == "spawned agent 1 (worker); follow it with `byenatos agents logs 1 --follow`"
        await asyncio.wait_for(model.wait_waiting(1), 30)  # the daemon runs it: it waits on the model
        code, out, _ = await byenatos(home, "agents", "ps")
        [row] = ps_rows(out)
        assert row[:3] == ["1", "worker", "waiting_model"]  # the daemon's own view, from its memory

        code, out, err = await byenatos(home, "agents", "suspend", "1")
        assert (code, out.strip()) == (0, "agent 1 (worker): suspended: suspended by the user"), err
        code, _, err = await byenatos(home, "agents", "suspend", "1")
        assert code == 1 and one_readable_line(err) == "byenatos: cannot suspend agent 1: it is suspended"
        code, out, _ = await byenatos(home, "agents", "ps")
        assert ps_rows(out)[0][2:] == ["suspended", "0", "0", "$0.0000", ps_rows(out)[0][6], "suspended by the user"]
        code, out, err = await byenatos(home, "agents", "resume", "1")
        assert code == 0 and "not running" not in out, err
        await asyncio.wait_for(model.wait_waiting(1), 30)

        follow = asyncio.create_task(byenatos(home, "agents", "logs", "1", "--follow"))
        code, out, err = await byenatos(home, "agents", "message", "1", "also", "say", "hi")
        assert (code, out.strip()) == (0, "sent message 1 to agent 1 (worker)"), err
        model.gate.set()
        code, out, err = await asyncio.wait_for(follow, 60)  # ends when the agent ends
        assert code == 0, err
        kinds = [line.split()[2] for line in out.strip().splitlines()]
        assert "message" in kinds and "tool" in kinds and kinds[-1] == "result"
        assert side_effects(home) == "x\n"
        assert {"role": "user", "content": "also say hi"} in model.chat_bodies[-1]["messages"]
    finally:
        if model.gate is not None:
            model.gate.set()
        assert await stop_daemon(daemon) == 0


async def test_run_wait_against_the_daemon_prints_the_answer(home, model, worker, unused_tcp_port):
    model.plan = [[WRITE]]
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        code, out, err = await byenatos(home, "agents", "run", str(worker), "work", "--wait", "--quota", "steps=5")
        assert code == 0, err
        assert out.strip() == 'Final answer. Last tool said: {"path":"log.txt","bytes":2,"mode":"append"}'
        assert "spawned" in err and " tool " in err
        code, out, _ = await byenatos(home, "agents", "ps", "--all", "--json")
        [proc] = json.loads(out)
        assert proc["state"] == "done" and proc["quotas"]["steps"] == 5
        code, _, err = await byenatos(home, "agents", "kill", "1")
        assert code == 1 and "already ended (done)" in one_readable_line(err)
    finally:
        assert await stop_daemon(daemon) == 0


async def test_a_cli_command_beside_the_daemon_does_not_run_its_agents(home, model, worker, unused_tcp_port):
    """Only the kernel serving the home runs its agents: another command that starts a kernel
    of its own (here `apps list`) must not resume them too, or a step would run twice."""
    model.plan = [[WRITE]]
    model.gate = asyncio.Event()
    daemon = await start_daemon(home, "serve", "--port", str(unused_tcp_port), "--no-scan")
    try:
        assert (await byenatos(home, "agents", "run", str(worker), "work"))[0] == 0
        await asyncio.wait_for(model.wait_waiting(1), 30)
        code, _, err = await byenatos(home, "apps", "list")
        assert code == 0, err
        assert (model.waiting, len(model.chat_bodies)) == (1, 1)  # the daemon's one call, no second
        code, out, _ = await byenatos(home, "agents", "kill", "1")
        assert code == 0 and out.strip() == "agent 1 (worker): killed: killed by the user"
    finally:
        model.gate.set()
        assert await stop_daemon(daemon) == 0
