"""Durable resume: 50 agents mid-run, `byenatos serve` killed with SIGKILL, then restarted.

    .venv/bin/python -m bench.agents_resume [--agents 50] [--rounds 3]

Each agent appends a line to a file in its working folder per tool call (`--rounds` calls).
The daemon is killed while every agent has made one tool call and waits on the model. Reported:
the share of agents resumed (each made its next model call after the restart), tool calls
repeated (lines beyond agents times rounds), and the time from starting the new daemon to every
agent resumed (the daemon's own start-up included), as one run's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time

import httpx

from bench._util import ROOT, env_for, temp_home

SPEC = '''
name = "bench-survivor"
instructions = "Append to your log."
tools = ["file_write"]
'''


async def start_daemon(home, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", "--port", str(port), "--no-scan", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env_for(home))
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line.startswith(b"ByenatOS gateway on"):
        raise RuntimeError(f"the daemon did not start: {line!r}")
    return proc


async def ended_state(client: httpx.AsyncClient, pid: int) -> str:
    """Follow the agent's event stream to its `end` event; its final state."""
    import json

    async with client.stream("GET", f"/api/agents/{pid}/events") as stream:
        event = None
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "end":
                return str(json.loads(line.removeprefix("data: "))["state"])
    return "unknown"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = temp_home()
    os.environ.update(env_for(home))
    sys.path.insert(0, str(ROOT))
    from app.kernel.kernel import Kernel
    from tests.fakes.agent_upstream import AgentUpstream

    fake = await AgentUpstream().start()
    fake.plan = [[("file_write", {"path": "log.txt", "content": "line\n", "mode": "append"})]] * args.rounds
    kernel = await Kernel().start()
    await kernel.add_provider("fake", "openai", base_url=fake.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    kernel.tool_invoker.permissions.set(None, "file_write", "allow")  # the agents write without asking
    token = kernel.apps.admin_token()
    await kernel.stop()

    port = free_port()
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    fake.gate = asyncio.Event()
    daemon = await start_daemon(home, port)
    async with httpx.AsyncClient(base_url=url, headers=headers, trust_env=False, timeout=60) as client:
        pids = []
        for i in range(args.agents):
            r = await client.post("/api/agents", json={"spec": SPEC, "task": f"run {i}"})
            r.raise_for_status()
            pids.append(r.json()["pid"])
        await asyncio.wait_for(fake.wait_waiting(args.agents), 120)
        fake.gate.set()
        fake.gate = asyncio.Event()
        await asyncio.wait_for(fake.wait_waiting(args.agents), 120)  # one tool call each, then waiting
    daemon.send_signal(signal.SIGKILL)
    await daemon.wait()
    # The held requests of the dead daemon end with it; the new daemon's are counted afresh.
    fake.gate.set()
    await asyncio.sleep(0)
    fake.gate = asyncio.Event()
    before = len(fake.chat_bodies)

    t0 = time.perf_counter()
    daemon = await start_daemon(home, port)
    started_s = time.perf_counter() - t0
    await asyncio.wait_for(fake.wait_waiting(args.agents), 300)
    resumed_s = time.perf_counter() - t0
    resumed = len({b["messages"][1]["content"] for b in fake.chat_bodies[before:]})
    fake.gate.set()
    async with httpx.AsyncClient(base_url=url, headers=headers, trust_env=False, timeout=60) as client:
        states = list(await asyncio.gather(*(ended_state(client, pid) for pid in pids)))
    daemon.send_signal(signal.SIGTERM)
    await daemon.wait()
    lines = (home / "data" / "agents" / "bench-survivor" / "log.txt").read_text().count("line")
    await fake.stop()
    print(f"agents: {args.agents}, {args.rounds} tool calls each; killed after one call each")
    print(f"resumed: {resumed} of {args.agents} ({resumed / args.agents:.0%}); ended done: "
          f"{states.count('done')} of {args.agents}")
    print(f"tool calls: {lines} made for {args.agents * args.rounds} asked: {max(0, lines - args.agents * args.rounds)} "
          "repeated")
    print(f"restart to all resumed: {resumed_s:.2f} s (the daemon listening after {started_s:.2f} s)")


if __name__ == "__main__":
    asyncio.run(main())
