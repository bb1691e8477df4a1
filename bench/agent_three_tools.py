"""An agent task that needs three tools, end to end, against a fake upstream that answers with tool calls.

    .venv/bin/python -m bench.agent_three_tools [--runs 20]

The task: "When do I fly to Lisbon, and is it in my plan?". The fake model (its own process,
tests/fakes/agent_upstream.py, 0 ms) answers three times with one tool call each, as a model
working it out would: memory_search (the user's HiNATA record), file_read (plan.md in the
agent's folder), file_list, then the final answer. Each run is one kernel-run agent from spawn
to done, one at a time: 4 model calls and 3 tool calls, every step checkpointed by DBOS.

Reported from one run: the median and p90 time from spawn to done, and where it goes: the model
calls (HTTP round trips to the fake, through the socket and the scheduler), the tool calls (the
tools themselves), and the rest (the agent kernel: the durable engine's checkpoints, the process
table, the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from bench._util import ROOT, env_for, median, percentile, start_process, stop_process, temp_home

UPSTREAM = (
    "import asyncio\n"
    "from tests.fakes.agent_upstream import AgentUpstream\n"
    "async def main():\n"
    "    fake = await AgentUpstream().start()\n"
    "    fake.plan = [[('memory_search', {'query': 'Lisbon flight'})], [('file_read', {'path': 'plan.md'})],\n"
    "                 [('file_list', {})]]\n"
    "    print('UPSTREAM', fake.api_base, flush=True)\n"
    "    await asyncio.Event().wait()\n"
    "asyncio.run(main())\n"
)
AGENT = """
name = "trip-check"
instructions = "Answer from the user's memory and files."
tools = ["memory_search", "file_read", "file_list"]
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    home = temp_home()
    os.environ.update(env_for(home))
    sys.path.insert(0, str(ROOT))
    upstream, line = await start_process(sys.executable, "-c", UPSTREAM, env=env_for(temp_home()),
                                         ready_prefix="UPSTREAM")
    from app.kernel.agents.process import ProcessState
    from app.kernel.agents.spec import parse_agent
    from app.kernel.kernel import Kernel
    from app.kernel.personal.service import Caller

    kernel = await Kernel().start()
    try:
        await kernel.add_provider("fake", "openai", base_url=line.split()[1])
        await kernel.refresh_provider("fake")
        await kernel.set_default_model("fake/gpt-fake-mini")
        await kernel.personal.add({"id": "rec-lisbon", "highlight": "Flight to Lisbon on 14 May, 09:40",
                                   "access": "shared"}, Caller.user())
        spec = parse_agent(AGENT)
        folder = kernel.paths.data_dir / "agents" / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plan.md").write_text("# May\n- 14 May: fly to Lisbon\n")
        runtime = kernel.agents
        await runtime.engine.start(runtime)

        totals: list[float] = []
        model_s: list[float] = []
        tool_s: list[float] = []
        for i in range(args.runs + 1):  # the first run warms the engine and the caches: not counted
            t0 = time.perf_counter()
            proc = await runtime.spawn(spec, "When do I fly to Lisbon, and is it in my plan?")
            done = await runtime.wait(proc.pid, timeout=120)
            total = time.perf_counter() - t0
            if done.state is not ProcessState.DONE or done.usage.calls != 4 or done.usage.tool_calls != 3:
                raise SystemExit(f"run {i}: {done.state.value} {done.reason} ({done.usage})")
            entries = runtime.logs(proc.pid)
            models = sum(e["detail"].get("elapsed_s", 0.0) for e in entries if e["kind"] == "llm")
            tools = sum(e["detail"].get("elapsed_s", 0.0) for e in entries if e["kind"] == "tool")
            if i:
                totals.append(total)
                model_s.append(models)
                tool_s.append(tools)
        rest = [t - m - u for t, m, u in zip(totals, model_s, tool_s, strict=True)]
        ms = 1000.0
        print(f"agent task with three tools (4 model calls, 3 tool calls), {args.runs} runs one at a time")
        print(f"spawn to done: median {median(totals) * ms:.1f} ms, p90 {percentile(totals, 90) * ms:.1f} ms")
        print(f"  model calls {median(model_s) * ms:.1f} ms, tools {median(tool_s) * ms:.1f} ms, "
              f"agent kernel (checkpoints, table, loop) {median(rest) * ms:.1f} ms (medians)")
    finally:
        await kernel.stop()
        await stop_process(upstream)


if __name__ == "__main__":
    asyncio.run(main())
