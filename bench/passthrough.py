"""Pass-through overhead of `byenatos serve` against a 0-ms fake OpenAI upstream, sequential.

    .venv/bin/python -m bench.passthrough [--requests 2000]

Each request is timed end to end from one client: straight to the upstream, then through
the gateway; the difference of the percentiles is what ByenatOS adds. Non-streaming and
streaming are measured separately; for streams, both to the last byte (the fake sends its nine
events at once, so relaying each one adds up, a worst case) and to the first event (the
latency a user sees before the first token). The upstream and the gateway are separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import aiohttp

from bench._util import env_for, percentile, start_fake_upstream, start_process, stop_process, temp_home

BODY = {"model": "MODEL", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}


async def timed(session: aiohttp.ClientSession, url: str, model: str, stream: bool, n: int,
                token: str | None = None, first: list[float] | None = None) -> list[float]:
    """Milliseconds per request, to the last byte. For streams, `first` gets the time to the
    first event (what a user waits before the first token shows)."""
    body = {**BODY, "model": model, "stream": stream}
    headers = {"Authorization": f"Bearer {token}"} if token else None
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.post(url, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            if first is not None:
                await r.content.readany()
                first.append((time.perf_counter() - t0) * 1000)
            await r.read()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the fake upstream's delay per answer")
    args = parser.parse_args()
    upstream, api_base = await start_fake_upstream(args.latency_ms / 1000)
    home = temp_home()
    env = env_for(home)
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "app", "models", "add", "up", "--kind", "openai", "--url", api_base],
        env=env, check=True, capture_output=True,
    )
    registered = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "app", "apps", "register", "bench"],
        env=env, check=True, capture_output=True, text=True,
    )
    token = registered.stdout.splitlines()[0].strip()  # the gateway wants an app token
    gateway, line = await start_process(sys.executable, "-m", "app", "serve", "--port", "0", "--no-scan", env=env,
                                        ready_prefix="ByenatOS gateway on")
    via = line.split()[3] + "/v1/chat/completions"
    direct = api_base + "/chat/completions"
    try:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as s:
            for stream in (False, True):
                await timed(s, direct, "gpt-fake-mini", stream, 200)  # warm-up both paths
                await timed(s, via, "up/gpt-fake-mini", stream, 200, token)
                d_first: list[float] | None = [] if stream else None
                v_first: list[float] | None = [] if stream else None
                d = await timed(s, direct, "gpt-fake-mini", stream, args.requests, first=d_first)
                v = await timed(s, via, "up/gpt-fake-mini", stream, args.requests, token, first=v_first)
                kind = "stream" if stream else "non-stream"
                for p in (50, 99):
                    dp, vp = percentile(d, p), percentile(v, p)
                    print(f"{kind:10s} p{p}: direct {dp:.3f} ms, via ByenatOS {vp:.3f} ms, added {vp - dp:.3f} ms")
                if d_first and v_first:
                    for p in (50, 99):
                        dp, vp = percentile(d_first, p), percentile(v_first, p)
                        print(f"first event p{p}: direct {dp:.3f} ms, via ByenatOS {vp:.3f} ms, added {vp - dp:.3f} ms")
    finally:
        await stop_process(gateway)
        await stop_process(upstream)


if __name__ == "__main__":
    asyncio.run(main())
