"""The Responses API against Chat Completions through the same gateway and fake upstream, in one run.

    .venv/bin/python -m bench.responses_vs_chat [--requests 1000] [--seconds 10] [--connections 64]

One `byenatos serve`, one fake OpenAI upstream process (on 127.0.0.2, so the router gives it
the cloud policy rather than a local runtime's few slots; see bench.gateway_vs_litellm), the
same prompt both ways: `POST /v1/chat/completions` with `messages`, `POST /v1/responses` with
`input` (stored, the default, and with `store: false`), streaming and not.

* Added latency: sequential requests from one keep-alive connection per target, interleaved
  request by request (drift hits all alike); p50/p99 of each, and what Responses adds over chat.
  Chat goes through the pass-through lane; Responses cannot (it is translated and stored), so
  this is the whole price of the translation, the store write and the general path.
* Throughput: `--connections` concurrent connections for `--seconds` per target, aiohttp
  clients in this process, targets in the order A B B A so drift hits both alike; requests per
  second, errors, and the ratio Responses / chat (target: at least 0.8x), both to chat through
  the lane and to chat on the general path (`chat_general`: a priority header keeps it off the
  lane), which is the path Responses takes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._util import percentile, stop_process
from bench.gateway_vs_litellm import start_byenatos, start_upstream

PROMPT = "Say hello."


@dataclass
class Target:
    name: str
    url: str
    body: dict[str, object]
    headers: dict[str, str]

    def data(self, stream: bool) -> bytes:
        return json.dumps({**self.body, "stream": stream}).encode()


def targets(gateway: str, token: str, model: str) -> list[Target]:
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    chat = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    responses = {"model": model, "input": PROMPT, "max_output_tokens": 16}
    return [
        Target("chat", f"{gateway}/v1/chat/completions", chat, auth),
        # The same chat request on the general path (the lane leaves requests with a priority
        # header to it): what Responses costs over chat once both take the same path.
        Target("chat_general", f"{gateway}/v1/chat/completions", chat, {**auth, "X-ByenatOS-Priority": "interactive"}),
        Target("responses", f"{gateway}/v1/responses", responses, auth),
        Target("responses_nostore", f"{gateway}/v1/responses", {**responses, "store": False}, auth),
    ]


async def sequential(ts: list[Target], stream: bool, n: int, warmup: int) -> dict[str, tuple[list[float], int]]:
    out: dict[str, tuple[list[float], int]] = {t.name: ([], 0) for t in ts}
    sessions = {t.name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for t in ts}
    try:
        for i in range(warmup + n):
            for t in ts:
                t0 = time.perf_counter()
                async with sessions[t.name].post(t.url, data=t.data(stream), headers=t.headers) as r:
                    await r.read()
                    ok = r.status == 200
                elapsed = (time.perf_counter() - t0) * 1000
                if i >= warmup:
                    times, errors = out[t.name]
                    if ok:
                        times.append(elapsed)
                    out[t.name] = (times, errors + (not ok))
    finally:
        for s in sessions.values():
            await s.close()
    return out


async def throughput(t: Target, stream: bool, seconds: float, connections: int) -> tuple[int, float, int]:
    """(requests, seconds taken, errors) of `connections` workers posting for `seconds`."""
    done = errors = 0
    data = t.data(stream)
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                async with session.post(t.url, data=data, headers=t.headers) as r:
                    await r.read()
                    errors += r.status != 200
            except aiohttp.ClientError:
                errors += 1
            done += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        await asyncio.gather(*(worker(s) for _ in range(connections)))
    return done, time.perf_counter() - started, errors


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed sequential requests per target")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run (two per target)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    procs: list[asyncio.subprocess.Process] = []
    results: dict[str, object] = {"connections": args.connections}
    try:
        upstream, base = await start_upstream(0.0)
        procs.append(upstream)
        gateway, url, token = await start_byenatos({"up": base})
        procs.append(gateway)
        ts = targets(url, token, "up/gpt-fake-mini")
        for stream in (False, True):
            kind = "stream" if stream else "non-stream"
            seq = await sequential(ts, stream, args.requests, warmup=max(20, args.requests // 10))
            chat_p50, chat_p99 = percentile(seq["chat"][0], 50), percentile(seq["chat"][0], 99)
            row: dict[str, dict[str, float]] = {}
            for t in ts:
                times, errors = seq[t.name]
                row[t.name] = {"p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3),
                               "added_p50_ms": round(percentile(times, 50) - chat_p50, 3),
                               "added_p99_ms": round(percentile(times, 99) - chat_p99, 3), "errors": errors}
            half = args.seconds / 2
            counts = {t.name: [0, 0.0, 0] for t in ts}
            for order in (ts, list(reversed(ts))):  # A B C C B A: drift hits all alike
                for t in order:
                    n, took, errors = await throughput(t, stream, half, args.connections)
                    counts[t.name][0] += n
                    counts[t.name][1] += took
                    counts[t.name][2] += errors
            for t in ts:
                n, took, errors = counts[t.name]
                row[t.name]["rps"] = round(n / took, 1)
                row[t.name]["errors"] += errors
            for name in ("chat_general", "responses", "responses_nostore"):
                row[name]["throughput_ratio"] = round(row[name]["rps"] / max(row["chat"]["rps"], 0.001), 3)
            for name in ("responses", "responses_nostore"):
                row[name]["ratio_to_general"] = round(row[name]["rps"] / max(row["chat_general"]["rps"], 0.001), 3)
            results[kind] = row
            _print(kind, row, args.connections)
    finally:
        for proc in reversed(procs):
            await stop_process(proc)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _print(kind: str, row: dict[str, dict[str, float]], connections: int) -> None:
    print(f"\n{kind}")
    print(f"  {'target':18s} {'p50 ms':>8s} {'p99 ms':>8s} {'+p50 vs chat':>13s} {'+p99 vs chat':>13s} "
          f"{f'req/s ({connections})':>12s} {'/ chat':>7s} {'/ general':>9s} {'errors':>7s}")
    for name, r in row.items():
        ratio = f"{r['throughput_ratio']:.2f}x" if "throughput_ratio" in r else ""
        general = f"{r['ratio_to_general']:.2f}x" if "ratio_to_general" in r else ""
        print(f"  {name:18s} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['added_p50_ms']:13.3f} {r['added_p99_ms']:13.3f} "
              f"{r['rps']:12.1f} {ratio:>7s} {general:>9s} {int(r['errors']):7d}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
