"""What any process between a client and its upstream costs on this machine: socat, a relay in C.

    .venv/bin/python -m bench.relay_floor [--latency-ms 50] [--requests 300]

The same sequential client and fake OpenAI upstream as bench.gateway_vs_litellm, with socat
(`apt-get install socat`) copying bytes in between, direct and relayed requests interleaved.
Its added p50 is the floor under the gateway's: no HTTP parsing, no auth, no JSON, only the
extra hop, its wake-ups and its copies. On the development VM the floor grows after idle
(+0.05 ms with a 0 ms upstream, +0.22 ms with a 50 ms one), which is part of why the gateway's
added latency grows with the upstream's (docs/gateway.md § How fast).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import sys
import time

import aiohttp

from bench._util import median, start_fake_upstream

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def one(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.post(url, json=BODY) as r:
        assert r.status == 200, r.status
        await r.read()
    return (time.perf_counter() - started) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(latency_ms: float, requests: int) -> None:
    upstream, base = await start_fake_upstream(latency_ms / 1000)
    origin = base.split("//", 1)[1].split("/", 1)[0]
    port = free_port()
    relay = await asyncio.create_subprocess_exec(
        "socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"TCP:{origin},nodelay"
    )
    try:
        direct_url = base + "/chat/completions"
        relay_url = base.replace(origin, f"127.0.0.1:{port}") + "/chat/completions"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            for _ in range(50):  # until socat listens, then warm both paths
                try:
                    await one(session, relay_url)
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # socat's listening socket is not up yet
            for _ in range(20):
                await one(session, direct_url)
                await one(session, relay_url)
            direct, relayed = [], []
            for _ in range(requests):
                direct.append(await one(session, direct_url))
                relayed.append(await one(session, relay_url))
        print(f"{latency_ms:g} ms upstream, {requests} requests each: direct p50 {median(direct):.3f} ms, "
              f"through socat {median(relayed):.3f} ms, added {median(relayed) - median(direct):+.3f} ms")
    finally:
        relay.terminate()
        await relay.wait()
        upstream.terminate()
        await upstream.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("socat") is None:
        sys.exit("bench.relay_floor needs socat: apt-get install socat")
    asyncio.run(measure(args.latency_ms, args.requests))


if __name__ == "__main__":
    main()
