"""ByenatOS as an MCP server: the `memory_search` round trip over stdio and over HTTP.

    .venv/bin/python -m bench.mcp_server_roundtrip [--records 500] [--calls 200]

The official `mcp` SDK client (handshake era) calls `memory_search` `--calls` times, one after
another, on a home holding `--records` records, over three paths:

- stdio, in-process: `byenatos mcp serve` with nothing running (its own kernel);
- HTTP: `byenatos serve` running, the client on its /mcp (streamable HTTP, SSE answers);
- stdio, relayed: `byenatos serve` running, `byenatos mcp serve` relaying to its /mcp.

Reported per path: the median and p90 of a call, and of an MCP `ping` (the transport's own
cost: no tool runs), so the tool's share and the transport's can be told apart. Every process
is a real one (the server, the daemon), on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

from bench._util import ROOT, env_for, median, percentile, stop_process, temp_home

BYENATOS = str(Path(sys.executable).with_name("byenatos"))
WORDS = ("vault", "garden", "invoice", "python", "piano", "rust", "tax", "holiday", "paper", "bicycle")


async def seed(home: Path, n: int) -> None:
    os.environ.update(BYENATOS_HOME=str(home), BYENATOS_SECRETS="file")
    from app.kernel.kernel import Kernel
    from app.kernel.personal.service import Caller

    async with Kernel() as kernel:
        for start in range(0, n, 100):
            batch = [{"highlight": f"note {i} about {WORDS[i % len(WORDS)]} and {WORDS[(i * 7) % len(WORDS)]}",
                      "note": "bench record " * 20} for i in range(start, min(n, start + 100))]
            await kernel.personal.add(batch, Caller.user())
        await kernel.personal.wait_vectors()


async def timed(client, calls: int) -> tuple[list[float], list[float]]:
    from mcp.shared.exceptions import MCPDeprecationWarning

    search, ping = [], []
    for i in range(calls):
        t = time.perf_counter()
        result = await client.call_tool("memory_search", {"query": f"{WORDS[i % len(WORDS)]} notes", "k": 8})
        search.append((time.perf_counter() - t) * 1000)
        assert not result.is_error, result.content
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            t = time.perf_counter()
            await client.send_ping()
            ping.append((time.perf_counter() - t) * 1000)
    return search, ping


@contextlib.asynccontextmanager
async def over_stdio(home: Path):
    from mcp import Client, StdioServerParameters

    env = {k: v for k, v in env_for(home).items() if k in ("BYENATOS_HOME", "BYENATOS_SECRETS", "PATH",
                                                             "LITELLM_LOCAL_MODEL_COST_MAP", "PYTHONPATH")}
    params = StdioServerParameters(command=BYENATOS, args=["mcp", "serve"], env=env, cwd=str(ROOT))
    async with Client(params, mode="legacy", cache=None) as client:
        yield client


@contextlib.asynccontextmanager
async def over_http(url: str, token: str):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, trust_env=False) as http,
                Client(streamable_http_client(f"{url}/mcp", http_client=http), mode="legacy", cache=None) as c):
        yield c


def admin_token(home: Path) -> str:
    from app.cli.agents import _admin_token
    from app.kernel.config import Paths

    return _admin_token(Paths.default())


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=500)
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args()
    home = temp_home()
    await seed(home, args.records)
    results: dict[str, tuple[list[float], list[float]]] = {}

    async with over_stdio(home) as client:
        await timed(client, 10)  # warm: the first search opens the vectors
        results["stdio, in-process kernel"] = await timed(client, args.calls)

    daemon = await asyncio.create_subprocess_exec(
        BYENATOS, "serve", "--port", "0", "--no-scan", stdout=asyncio.subprocess.PIPE, env=env_for(home), cwd=ROOT)
    try:
        assert daemon.stdout is not None
        line = (await asyncio.wait_for(daemon.stdout.readline(), 60)).decode()
        url = line.split(" on ")[1].split()[0]
        token = admin_token(home)
        async with over_http(url, token) as client:
            await timed(client, 10)
            results["HTTP /mcp on `byenatos serve`"] = await timed(client, args.calls)
        async with over_stdio(home) as client:
            await timed(client, 10)
            results["stdio, relayed to `byenatos serve`"] = await timed(client, args.calls)
    finally:
        await stop_process(daemon)

    print(f"memory_search round trip, {args.records} records, {args.calls} sequential calls (ms)")
    print(f"{'path':38} {'search p50':>10} {'p90':>7} {'ping p50':>9} {'p90':>7}")
    for name, (search, ping) in results.items():
        print(f"{name:38} {median(search):10.2f} {percentile(search, 90):7.2f} "
              f"{median(ping):9.2f} {percentile(ping, 90):7.2f}")


if __name__ == "__main__":
    asyncio.run(main())
