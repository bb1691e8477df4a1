"""MCP tool calls through the kernel against the SDK's own client calling the same server, in one run.

    .venv/bin/python -m bench.mcp_calls [--server time|echo] [--calls 300] [--rounds 5] [--concurrency 8] [--cold 5]

Two copies of the same stdio server run side by side: one behind a started Kernel (a tool of
`kernel.tool_registry`, found by name and called with a ToolContext, as an agent's tool step
calls it: the MCP host's connection, our stdio transport, the result made text for the model),
one behind the mcp SDK's `stdio_client` + `ClientSession` (`call_tool` on the raw session).
Rounds alternate between the two so both see the same machine. Printed:

- latency per call, sequential: p50 and p99 of each path, and what the kernel adds (p50, p99);
- calls per second, sequential and with `--concurrency` calls in flight, and the kernel's ratio
  to the direct client's (the target: at least 0.8x);
- cold start: from nothing running to the first tool call's answer, through the kernel (a fresh
  host: spawn, handshake, tool list, call) and through the SDK (spawn, handshake, call), median
  of `--cold` starts.

`--server time` is mcp-server-time (`get_current_time`, a real server whose own work dominates);
`--server echo` is the raw JSON-RPC fake of the tests (tests/fakes/mcp_faulty.py, `echo`), the
cheapest server there is, so the kernel's own cost shows most.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench._util import ROOT, percentile, temp_home

SERVERS = {
    "time": ([str(Path(sys.executable).parent / "mcp-server-time")], "get_current_time", {"timezone": "Europe/Lisbon"}),
    "echo": ([sys.executable, "-m", "tests.fakes.mcp_faulty"], "echo", {"text": "hello"}),
}


async def _timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def _rate(call: Any, n: int, concurrency: int) -> float:
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t)


async def _direct_session(command: list[str]) -> tuple[Any, Any]:
    from contextlib import AsyncExitStack

    from mcp import ClientSession, StdioServerParameters, stdio_client

    stack = AsyncExitStack()
    params = StdioServerParameters(command=command[0], args=command[1:], cwd=str(ROOT))
    read, write = await stack.enter_async_context(stdio_client(params))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session, stack


async def _cold(kernel: Any, command: list[str], tool: str, args: dict[str, Any], ctx: Any,
                n: int) -> tuple[list[float], list[float]]:
    from app.kernel.mcp.config import ServerConfig

    through, direct = [], []
    for i in range(n):
        name = f"cold{i}"
        kernel.mcp.add(name, ServerConfig(command=command[0], args=command[1:], cwd=str(ROOT)))
        t = time.perf_counter()
        found = await kernel.tool_registry.find(f"mcp__{name}__{tool}")
        await found.call(ctx, args)
        through.append(time.perf_counter() - t)
        await kernel.mcp.remove(name)
        t = time.perf_counter()
        session, stack = await _direct_session(command)
        await session.call_tool(tool, args)
        direct.append(time.perf_counter() - t)
        await stack.aclose()
    return through, direct


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench.mcp_calls")
    p.add_argument("--server", choices=sorted(SERVERS), default="time")
    p.add_argument("--calls", type=int, default=300, help="sequential calls per path per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--cold", type=int, default=5, help="cold starts per path")
    a = p.parse_args(argv)
    os.environ["BYENATOS_HOME"] = str(temp_home())
    os.environ["BYENATOS_SECRETS"] = "file"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from app.kernel.kernel import Kernel
    from app.kernel.mcp.config import ServerConfig
    from app.kernel.tools.base import ToolContext

    command, tool, args = SERVERS[a.server]
    kernel = await Kernel().start()
    session, stack = None, None
    try:
        ctx = ToolContext(app="bench", scopes=frozenset(), workdir=kernel.paths.data_dir, key="bench")
        kernel.mcp.add("bench", ServerConfig(command=command[0], args=command[1:], cwd=str(ROOT)))
        registry = kernel.tool_registry
        name = f"mcp__bench__{tool}"

        async def through() -> None:
            await (await registry.find(name)).call(ctx, args)

        session, stack = await _direct_session(command)

        async def direct() -> None:
            await session.call_tool(tool, args)

        for call in (through, direct):  # warm both (imports, caches, the server's own first call)
            await _timed(call, 20)
        lat: dict[str, list[float]] = {"kernel": [], "direct": []}
        seq: dict[str, list[float]] = {"kernel": [], "direct": []}
        conc: dict[str, list[float]] = {"kernel": [], "direct": []}
        for r in range(a.rounds):
            order = [("kernel", through), ("direct", direct)]
            if r % 2:
                order.reverse()
            for label, call in order:
                t = time.perf_counter()
                lat[label] += await _timed(call, a.calls)
                seq[label].append(a.calls / (time.perf_counter() - t))
                conc[label].append(await _rate(call, a.calls, a.concurrency))
        cold_k, cold_d = await _cold(kernel, command, tool, args, ctx, a.cold)
    finally:
        if stack is not None:
            await stack.aclose()
        await kernel.stop()

    def ms(v: float) -> float:
        return round(v * 1000, 3)

    k50, k99 = percentile(lat["kernel"], 50), percentile(lat["kernel"], 99)
    d50, d99 = percentile(lat["direct"], 50), percentile(lat["direct"], 99)
    result = {
        "server": a.server, "calls": a.calls * a.rounds,
        "kernel_p50_ms": ms(k50), "kernel_p99_ms": ms(k99), "direct_p50_ms": ms(d50), "direct_p99_ms": ms(d99),
        "added_p50_ms": ms(k50 - d50), "added_p99_ms": ms(k99 - d99),
        "seq_calls_s": {k: round(statistics.median(v), 1) for k, v in seq.items()},
        "conc_calls_s": {k: round(statistics.median(v), 1) for k, v in conc.items()},
        "cold_start_ms": {"kernel": ms(statistics.median(cold_k)), "direct": ms(statistics.median(cold_d))},
    }
    result["seq_ratio"] = round(result["seq_calls_s"]["kernel"] / result["seq_calls_s"]["direct"], 3)
    result["conc_ratio"] = round(result["conc_calls_s"]["kernel"] / result["conc_calls_s"]["direct"], 3)
    print(f"server {a.server} ({' '.join(Path(c).name for c in command)}), {result['calls']} calls per path, "
          f"{a.rounds} alternating rounds")
    print(f"latency p50: kernel {result['kernel_p50_ms']} ms, direct {result['direct_p50_ms']} ms, "
          f"added {result['added_p50_ms']} ms")
    print(f"latency p99: kernel {result['kernel_p99_ms']} ms, direct {result['direct_p99_ms']} ms, "
          f"added {result['added_p99_ms']} ms")
    print(f"calls/s sequential: kernel {result['seq_calls_s']['kernel']}, direct {result['seq_calls_s']['direct']} "
          f"-> {result['seq_ratio']}x (target >= 0.8x)")
    print(f"calls/s {a.concurrency} in flight: kernel {result['conc_calls_s']['kernel']}, "
          f"direct {result['conc_calls_s']['direct']} -> {result['conc_ratio']}x (target >= 0.8x)")
    print(f"cold start to first tool call (median of {a.cold}): kernel {result['cold_start_ms']['kernel']} ms, "
          f"direct {result['cold_start_ms']['direct']} ms")
    return result


if __name__ == "__main__":
    asyncio.run(main())
