"""1,000 concurrent kernel-run agents against a fast fake model, on this machine's cores.

    .venv/bin/python -m bench.agents_scale [--agents 1000] [--steps 4] [--idle 1000]

Each agent makes `--steps` model calls, each answered with one tool call (a file listing in
its working folder), then a final answer: steps + 1 calls per agent. Reported, from one run:

- calls/s of the agents against the same model calls made straight through the kernel
  (`Kernel.chat_routed` from as many concurrent tasks, no agent kernel): the agent kernel's
  cost per call (DBOS checkpoints each step in SQLite, our process table logs it) as a ratio;
- the agent kernel's overhead per call, p50/p99: an agent's time per model call minus the
  time of the same call made straight;
- steps lost: agents that did not end `done` with every step made, and tool calls made twice;
- memory per idle agent: `--idle` conversation agents waiting for a message, RSS and Python
  heap (tracemalloc) per agent.

The fake model runs in its own process (tests/fakes/agent_upstream.py, 0 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc

from bench._util import ROOT, env_for, median, percentile, start_process, stop_process, temp_home

UPSTREAM = (
    "import asyncio, sys\n"
    "from tests.fakes.agent_upstream import AgentUpstream\n"
    "async def main():\n"
    "    fake = await AgentUpstream().start()\n"
    "    fake.plan = [[('file_list', {})]] * int(sys.argv[1])\n"
    "    print('UPSTREAM', fake.api_base, flush=True)\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)
AGENT = """
name = "bench-worker"
instructions = "List your folder, then answer."
tools = ["file_list"]
"""
IDLE_AGENT = """
name = "bench-idle"
instructions = "Wait for the user."
tools = []
conversation = true
"""


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=4, help="tool rounds per agent (calls = steps + 1)")
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()

    home = temp_home()
    os.environ.update(env_for(home))
    sys.path.insert(0, str(ROOT))
    upstream, line = await start_process(sys.executable, "-c", UPSTREAM, str(args.steps), env=env_for(temp_home()),
                                         ready_prefix="UPSTREAM")
    api_base = line.split()[1]
    from app.kernel.agents.process import ProcessState
    from app.kernel.agents.spec import parse_agent
    from app.kernel.canonical import ChatMessage, ChatRequest
    from app.kernel.kernel import Kernel

    kernel = await Kernel().start()
    try:
        await kernel.add_provider("fake", "openai", base_url=api_base)
        await kernel.refresh_provider("fake")
        await kernel.set_default_model("fake/gpt-fake-mini")
        kernel.router.policy.max_concurrency_cloud = 10_000  # the fake takes whatever comes

        # -- the same calls, straight through the kernel -----------------------------------
        calls = args.steps + 1
        tools = kernel.agents.tools.schemas(["file_list"])

        async def straight(i: int, timings: list[float]) -> None:
            messages = [ChatMessage(role="system", content="List your folder, then answer."),
                        ChatMessage(role="user", content=f"task {i}")]
            for _ in range(calls):
                t0 = time.perf_counter()
                answer, _ = await kernel.chat_routed(ChatRequest(model="default", messages=messages, tools=tools))
                timings.append(time.perf_counter() - t0)
                messages.append(answer.message)
                for call in answer.message.tool_calls or []:
                    messages.append(ChatMessage(role="tool", tool_call_id=call["id"] if isinstance(call, dict)
                                                else call.id, content='{"entries": []}'))

        raw_timings: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(straight(i, raw_timings) for i in range(args.agents)))
        raw_s = time.perf_counter() - t0
        raw_rate = len(raw_timings) / raw_s

        # -- the agents ---------------------------------------------------------------------
        spec = parse_agent(AGENT)
        runtime = kernel.agents
        await runtime.engine.start(runtime)
        t0 = time.perf_counter()
        # Spawned concurrently, as a burst of users or a parent agent would.
        pids = [p.pid for p in await asyncio.gather(*(runtime.spawn(spec, f"task {i}") for i in range(args.agents)))]
        spawned_s = time.perf_counter() - t0
        done = await asyncio.gather(*(runtime.wait(pid, timeout=3600) for pid in pids))
        agent_s = time.perf_counter() - t0
        agent_calls = sum(p.usage.calls for p in done)
        agent_rate = agent_calls / agent_s
        lost = sum(1 for p in done if p.state is not ProcessState.DONE or p.usage.calls != calls)
        from app.kernel.store.agent_tables import AgentToolCallRow

        journaled = AgentToolCallRow.select().count()
        repeated = args.agents * args.steps - journaled
        per_call = [agent_s * args.agents / agent_calls] if agent_calls else []

        # -- idle agents ---------------------------------------------------------------------
        idle_spec = parse_agent(IDLE_AGENT)
        gc.collect()
        rss0 = rss_bytes()
        tracemalloc.start()
        heap0 = tracemalloc.get_traced_memory()[0]
        idle = [(await runtime.spawn(idle_spec, "hello")).pid for _ in range(args.idle)]
        await asyncio.gather(*(runtime.wait(pid, timeout=600, until=(ProcessState.WAITING_INPUT,)) for pid in idle))
        gc.collect()
        heap1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rss1 = rss_bytes()
        for pid in idle:
            await runtime.kill(pid)

        print(f"agents: {args.agents} x {calls} model calls, {args.steps} tool calls each")
        print(f"straight through the kernel: {raw_rate:,.0f} calls/s ({len(raw_timings)} calls in {raw_s:.2f} s); "
              f"per call p50 {median(raw_timings) * 1000:.1f} ms, p99 {percentile(raw_timings, 99) * 1000:.1f} ms")
        print(f"as agents: {agent_rate:,.0f} calls/s ({agent_calls} calls in {agent_s:.2f} s; spawning took "
              f"{spawned_s:.2f} s) = {agent_rate / raw_rate:.2f}x straight")
        if per_call:
            print(f"agent kernel's time per call (wall / calls, concurrent): {per_call[0] * 1000:.1f} ms against "
                  f"{raw_s * args.agents / len(raw_timings) * 1000:.1f} ms straight")
        print(f"steps lost: {lost} agents not done with every call; tool calls repeated: {max(0, -repeated)}, "
              f"missing: {max(0, repeated)}")
        print(f"idle agents: {args.idle}; RSS +{(rss1 - rss0) / args.idle / 1024:.1f} KB and Python heap "
              f"+{(heap1 - heap0) / args.idle / 1024:.1f} KB per idle agent")
    finally:
        await kernel.stop()
        await stop_process(upstream)


if __name__ == "__main__":
    asyncio.run(main())
