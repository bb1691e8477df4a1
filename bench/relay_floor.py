"""What any process between a client and its upstream costs on this machine, beside the gateway.

    .venv/bin/python -m bench.relay_floor [--latency-ms 50] [--requests 300]

One sequential client and the fake OpenAI upstream of bench.gateway_vs_litellm; the same
non-streaming request goes, interleaved round by round, to five places:

- straight to the upstream (the baseline every "added" figure is measured from);
- through socat (`apt-get install socat`): a relay in C that only copies bytes. Its added p50 is
  the hop itself, its wake-ups and copies;
- through bench._min_relay: the least a Python process can do, with the gateway's own parts
  (uvloop, httptools, orjson) and nothing else (no auth, limits, routing or accounting);
- through `byenatos serve` with an app token, everything on (the request takes the
  pass-through lane, app.kernel.gateway.lane);
- through a second `byenatos serve` with the lane off (`gateway.fast_lane = false`): the
  general path, for comparison.

On the development VM all three grow after idle, which is why the gateway's added latency grows
with the upstream's (docs/gateway.md § How fast).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time

import aiohttp

from bench._util import env_for, median, start_fake_upstream, start_process, stop_process, temp_home

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def one(session: aiohttp.ClientSession, url: str, model: str = "m", token: str | None = None) -> float:
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session.post(url, json={**BODY, "model": model}, headers=headers) as r:
        assert r.status == 200, r.status
        await r.read()
    return (time.perf_counter() - started) * 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_gateway(api_base: str, *, lane: bool = True) -> tuple[asyncio.subprocess.Process, str, str]:
    """`byenatos serve` in a fresh home with the upstream added and one app registered:
    (process, chat URL, app token). `lane=False`: with `gateway.fast_lane` off."""
    home = temp_home()
    env = env_for(home)
    if not lane:
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "settings.json").write_text(json.dumps({"gateway": {"fast_lane": False}}))
    run = [sys.executable, "-m", "app"]
    await asyncio.to_thread(subprocess.run, [*run, "models", "add", "up", "--kind", "openai", "--url", api_base],
                            env=env, check=True, capture_output=True)
    registered = await asyncio.to_thread(subprocess.run, [*run, "apps", "register", "bench"],
                                         env=env, check=True, capture_output=True, text=True)
    gateway, line = await start_process(*run, "serve", "--port", "0", "--no-scan", env=env,
                                        ready_prefix="ByenatOS gateway on")
    return gateway, line.split()[3] + "/v1/chat/completions", registered.stdout.splitlines()[0].strip()


async def measure(latency_ms: float, requests: int) -> None:
    upstream, base = await start_fake_upstream(latency_ms / 1000)
    origin = base.split("//", 1)[1].split("/", 1)[0]
    host, port = origin.split(":")
    path = "/" + base.split("//", 1)[1].split("/", 1)[1] + "/chat/completions"
    socat_port, relay_port = free_port(), free_port()
    socat = await asyncio.create_subprocess_exec(
        "socat", f"TCP-LISTEN:{socat_port},bind=127.0.0.1,reuseaddr,fork", f"TCP:{origin},nodelay"
    )
    relay, _ = await start_process(sys.executable, "-m", "bench._min_relay", host, port, path, str(relay_port),
                                   env=env_for(temp_home()), ready_prefix="RELAY ready")
    gateway, gateway_url, token = await start_gateway(base)
    general, general_url, general_token = await start_gateway(base, lane=False)
    try:
        paths = {
            "direct": lambda s: one(s, base + "/chat/completions"),
            "socat": lambda s: one(s, f"http://127.0.0.1:{socat_port}{path}"),
            "python floor": lambda s: one(s, f"http://127.0.0.1:{relay_port}/"),
            "ByenatOS": lambda s: one(s, gateway_url, "up/gpt-fake-mini", token),
            "(lane off)": lambda s: one(s, general_url, "up/gpt-fake-mini", general_token),
        }
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(paths))) as session:
            for _ in range(50):  # until socat listens
                try:
                    await paths["socat"](session)
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # socat's listening socket is not up yet
            times: dict[str, list[float]] = {name: [] for name in paths}
            for round_ in range(20 + requests):  # 20 warm-up rounds first
                for name, request in paths.items():
                    took = await request(session)
                    if round_ >= 20:
                        times[name].append(took)
        base_p50 = median(times["direct"])
        print(f"{latency_ms:g} ms upstream, {requests} sequential requests each, p50 direct {base_p50:.3f} ms; added:")
        for name in list(paths)[1:]:
            print(f"  {name:13s} {median(times[name]) - base_p50:+.3f} ms")
    finally:
        socat.terminate()
        await socat.wait()
        for proc in (relay, gateway, general, upstream):
            await stop_process(proc)


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
