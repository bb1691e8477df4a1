"""The gateway against LiteLLM's proxy: added latency and throughput over the same fake upstream.

    .venv/bin/python -m bench.gateway_vs_litellm [--requests 1000] [--seconds 10]

One run, one machine, one fake OpenAI upstream process per latency (0 ms and 50 ms), and
three ways to reach it: directly, through `byenatos serve`, and through LiteLLM's proxy
(`litellm --num_workers 1`, the same single worker as ours), streaming and not.

* Added latency: sequential requests from one keep-alive connection per target; direct and
  ByenatOS interleaved request by request (so a noisy neighbour hits both alike), LiteLLM in its
  own block (its proxy works on after each answer, which would land on the next request);
  p50/p99 of each minus the direct p50/p99. Streams: to the last byte, and to the first event.
  A bare TCP relay (bytes copied both ways, no HTTP) is measured alongside as a control: what
  any process in between costs on this machine.
* Throughput: 64 concurrent connections for `--seconds` with wrk (apt: `wrk`), or an
  aiohttp client when wrk is missing; requests per second and errors (non-2xx, socket errors).

LiteLLM's proxy is never a dependency of ByenatOS: it is looked for in a throwaway venv,
`$LITELLM_PROXY_VENV` or /tmp/litellm-proxy-venv, made with

    python3.11 -m venv /tmp/litellm-proxy-venv && /tmp/litellm-proxy-venv/bin/pip install 'litellm[proxy]'

The fake upstream stands in for a cloud API, so it listens on 127.0.0.2: ByenatOS treats
127.0.0.1/localhost backends as local runtimes, which its router caps at a few concurrent
requests (a llama.cpp process serialises anyway); a remote API gets the cloud policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench._util import env_for, percentile, start_process, stop_process, temp_home

PROMPT = [{"role": "user", "content": "Say hello."}]
LITELLM_KEY = "sk-bench-" + os.urandom(16).hex()

UPSTREAM = """
import asyncio, logging, socket, sys
from aiohttp import web
from tests.fakes.openai_upstream import FakeOpenAI

class _Forget(list):  # the fake keeps every request for tests; a benchmark must not grow
    def append(self, item):
        pass

# wrk cuts its 64 connections at the end of each run, mid-answer: the fake's tracebacks about
# writing to them are not errors of the measurement (those are counted by the client).
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)

async def main():
    fake = FakeOpenAI()
    fake.latency = float(sys.argv[1])
    fake.requests = _Forget()
    app = web.Application(middlewares=[fake._middleware])
    app.add_routes(fake.routes())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    await web.SockSite(runner, sock, backlog=2048).start()
    print("UPSTREAM", f"http://127.0.0.2:{sock.getsockname()[1]}/v1", flush=True)
    await asyncio.Event().wait()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


RELAY = """
import asyncio, sys
from urllib.parse import urlsplit

up = urlsplit(sys.argv[1])

class Side(asyncio.Protocol):
    other = None
    transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.other.transport.write(data)

    def connection_lost(self, exc):
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

class Downstream(Side):
    def connection_made(self, transport):
        super().connection_made(transport)
        self.early = []  # what arrives before the upstream side is connected
        asyncio.ensure_future(self.connect())

    def data_received(self, data):
        if self.other is None:
            self.early.append(data)
        else:
            self.other.transport.write(data)

    async def connect(self):
        _, upstream = await asyncio.get_running_loop().create_connection(Side, up.hostname, up.port)
        upstream.other, self.other = self, upstream
        for data in self.early:
            upstream.transport.write(data)

async def main():
    server = await asyncio.get_running_loop().create_server(Downstream, "127.0.0.1", 0)
    print("RELAY", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{up.path}", flush=True)
    await asyncio.Event().wait()

import uvloop
uvloop.run(main())
"""


@dataclass
class Target:
    name: str
    url: str  # the chat completions URL
    model: str
    headers: dict[str, str] = field(default_factory=dict)


def litellm_binary() -> Path | None:
    venv = Path(os.environ.get("LITELLM_PROXY_VENV", "/tmp/litellm-proxy-venv"))
    exe = venv / "bin" / "litellm"
    return exe if exe.exists() else None


async def start_upstream(latency: float) -> tuple[asyncio.subprocess.Process, str]:
    proc, line = await start_process(
        sys.executable, "-c", UPSTREAM, str(latency), env=env_for(temp_home()), ready_prefix="UPSTREAM"
    )
    return proc, line.split()[1]


async def start_relay(upstream: str) -> tuple[asyncio.subprocess.Process, str]:
    """A bare TCP relay in front of `upstream` (bytes copied both ways, no HTTP at all): the floor
    that any proxy process in between pays on this machine (the extra hop's wake-ups and copies)."""
    proc, line = await start_process(sys.executable, "-c", RELAY, upstream, env=env_for(temp_home()),
                                     ready_prefix="RELAY")
    return proc, line.split()[1]


async def start_byenatos(upstreams: dict[str, str]) -> tuple[asyncio.subprocess.Process, str, str]:
    env = env_for(temp_home())

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "app", *args], env=env, check=True, capture_output=True, text=True
        )
        return done.stdout

    for pid, base in upstreams.items():
        await asyncio.to_thread(cli, "models", "add", pid, "--kind", "openai", "--url", base)
    token = (await asyncio.to_thread(cli, "apps", "register", "bench")).splitlines()[0].strip()
    proc, line = await start_process(
        sys.executable,
        "-m",
        "app",
        "serve",
        "--port",
        "0",
        "--no-scan",
        env=env,
        ready_prefix="ByenatOS gateway on",
    )
    return proc, line.split()[3], token


async def start_litellm(exe: Path, upstreams: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    config = Path(tempfile.mkdtemp(prefix="litellm-bench-")) / "config.yaml"
    models = "".join(
        f"  - model_name: {name}\n    litellm_params:\n      model: openai/gpt-fake-mini\n"
        f"      api_base: {base}\n      api_key: sk-fake\n"
        for name, base in upstreams.items()
    )
    # Auth on, as ours is: the proxy's master key (no database, so no per-key lookups).
    config.write_text(
        f"model_list:\n{models}litellm_settings:\n  drop_params: true\n  set_verbose: false\n"
        "  turn_off_message_logging: true\n  disable_end_user_cost_tracking: true\n"
        f"general_settings:\n  master_key: {LITELLM_KEY}\n  disable_spend_logs: true\n"
        "  disable_error_logs: true\n"
    )
    port = _free_port()
    env = {
        **os.environ,
        "LITELLM_LOG": "ERROR",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "DISABLE_SCHEMA_UPDATE": "true",
    }
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError("LiteLLM's proxy exited during start-up")
            try:
                async with s.get(f"{url}/health/liveliness") as r:
                    if r.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)  # polling a child process's readiness; there is nothing to await
    raise RuntimeError("LiteLLM's proxy did not come up within 180 s")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body_for(target: Target, stream: bool) -> bytes:
    return json.dumps(
        {"model": target.model, "messages": PROMPT, "max_tokens": 16, "stream": stream}
    ).encode()


# -- sequential latency --------------------------------------------------------------------------
async def sequential(
    targets: list[Target], stream: bool, n: int, warmup: int
) -> dict[str, tuple[list[float], int, list[float]]]:
    """Per target: (ms to the last byte, errors, ms to the first body bytes — streams only)."""
    out: dict[str, tuple[list[float], int, list[float]]] = {t.name: ([], 0, []) for t in targets}
    sessions = {t.name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for t in targets}
    try:
        for i in range(warmup + n):
            for t in targets:
                data = body_for(t, stream)
                headers = {"Content-Type": "application/json", **t.headers}
                t0 = time.perf_counter()
                async with sessions[t.name].post(t.url, data=data, headers=headers) as r:
                    if stream:
                        await r.content.readany()  # the first event(s): what a user waits for
                    first = (time.perf_counter() - t0) * 1000
                    await r.read()
                    ok = r.status == 200
                elapsed = (time.perf_counter() - t0) * 1000
                if i >= warmup:
                    times, errors, firsts = out[t.name]
                    if ok:
                        times.append(elapsed)
                        firsts.append(first)
                    out[t.name] = (times, errors + (not ok), firsts)
    finally:
        for s in sessions.values():
            await s.close()
    return out


async def in_blocks(
    direct: Target, proxy: Target, stream: bool, n: int, warmup: int, block: int = 25
) -> dict[str, tuple[list[float], int, list[float]]]:
    """`sequential`, but each target in blocks of `block` requests, in the order A B B A A B B A…
    (drift hits both alike, as interleaving does): between two of its requests the proxy is idle
    only while the upstream works, as it is for an app that talks to it alone. Each block's
    first `warmup` requests are not timed, for both targets alike."""
    out: dict[str, tuple[list[float], int, list[float]]] = {direct.name: ([], 0, []), proxy.name: ([], 0, [])}
    blocks = max(2, round(n / block))
    for b in range(blocks):
        order = (direct, proxy) if b % 2 == 0 else (proxy, direct)
        for target in order:
            got = await sequential([target], stream, block, warmup)
            times, errors, firsts = out[target.name]
            more_times, more_errors, more_firsts = got[target.name]
            out[target.name] = (times + more_times, errors + more_errors, firsts + more_firsts)
    return out


# -- throughput ----------------------------------------------------------------------------------
def wrk_throughput(target: Target, stream: bool, seconds: float, connections: int) -> tuple[float, int, int]:
    """(requests/s, requests, errors) measured by wrk."""
    script = Path(tempfile.mkdtemp(prefix="wrk-")) / "post.lua"
    headers = {"Content-Type": "application/json", **target.headers}
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body_for(target, stream).decode())}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    text = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(x) for x in m.groups())
    return rps, total, errors


async def aiohttp_throughput(
    target: Target, stream: bool, seconds: float, connections: int
) -> tuple[float, int, int]:
    done = errors = 0
    data = body_for(target, stream)
    headers = {"Content-Type": "application/json", **target.headers}
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                async with session.post(target.url, data=data, headers=headers) as r:
                    await r.read()
                    errors += r.status != 200
            except aiohttp.ClientError:
                errors += 1
            done += 1

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        await asyncio.gather(*(worker(s) for _ in range(connections)))
    return done / (time.perf_counter() - started), done, errors


# -- the run -------------------------------------------------------------------------------------
async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=1000, help="timed sequential requests at 0 ms (50 ms: a fifth)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    exe = litellm_binary()
    if exe is None:
        sys.exit(
            "LiteLLM's proxy is missing. Make it (never inside .venv):\n"
            "  python3.11 -m venv /tmp/litellm-proxy-venv && "
            "/tmp/litellm-proxy-venv/bin/pip install 'litellm[proxy]'\n"
            "or point LITELLM_PROXY_VENV at a venv that has it."
        )
    use_wrk = shutil.which("wrk") is not None
    procs: list[asyncio.subprocess.Process] = []
    results: dict[str, object] = {"client": "wrk" if use_wrk else "aiohttp", "connections": args.connections}
    try:
        upstreams = {}
        for name, latency in (("up0", 0.0), ("up50", 0.05)):
            proc, base = await start_upstream(latency)
            procs.append(proc)
            upstreams[name] = base
        relays = {}
        for name, base in upstreams.items():
            proc, relays[name] = await start_relay(base)
            procs.append(proc)
        ours, ours_url, token = await start_byenatos(upstreams)
        procs.append(ours)
        theirs, theirs_url = await start_litellm(exe, {f"fake{k[2:]}": v for k, v in upstreams.items()})
        procs.append(theirs)
        for label, latency_ms in (("up0", 0), ("up50", 50)):
            targets = [
                Target("direct", f"{upstreams[label]}/chat/completions", "gpt-fake-mini"),
                Target(
                    "byenatos",
                    f"{ours_url}/v1/chat/completions",
                    f"{label}/gpt-fake-mini",
                    {"Authorization": f"Bearer {token}"},
                ),
                Target(
                    "litellm",
                    f"{theirs_url}/v1/chat/completions",
                    f"fake{label[2:]}",
                    {"Authorization": f"Bearer {LITELLM_KEY}"},
                ),
            ]
            n = args.requests if latency_ms == 0 else max(50, args.requests // 5)
            for stream in (False, True):
                kind = f"{latency_ms} ms upstream, {'stream' if stream else 'non-stream'}"
                # Direct and ByenatOS interleaved request by request (drift hits both alike);
                # LiteLLM in a block of its own right after: its proxy keeps the CPU busy for
                # milliseconds after each answer (logging, callbacks), which interleaved would
                # land on whichever request came next.
                relay = Target("relay", f"{relays[label]}/chat/completions", "gpt-fake-mini")
                seq = await sequential([*targets[:2], relay], stream, n, warmup=max(20, n // 10))
                seq.update(await sequential(targets[2:], stream, n, warmup=max(20, n // 10)))
                direct = seq["direct"][0]
                row: dict[str, object] = {}
                direct_first = seq["direct"][2]
                for t in targets:
                    times, errors, firsts = seq[t.name]
                    row[t.name] = {
                        "p50_ms": round(percentile(times, 50), 3),
                        "p99_ms": round(percentile(times, 99), 3),
                        "added_p50_ms": round(percentile(times, 50) - percentile(direct, 50), 3),
                        "added_p99_ms": round(percentile(times, 99) - percentile(direct, 99), 3),
                        "sequential_errors": errors,
                    }
                    if stream:
                        row[t.name]["added_first_p50_ms"] = round(  # type: ignore[index]
                            percentile(firsts, 50) - percentile(direct_first, 50), 3
                        )
                        row[t.name]["added_first_p99_ms"] = round(  # type: ignore[index]
                            percentile(firsts, 99) - percentile(direct_first, 99), 3
                        )
                for t in targets:
                    if use_wrk:
                        rps, total, errors = await asyncio.to_thread(
                            wrk_throughput, t, stream, args.seconds, args.connections
                        )
                    else:
                        rps, total, errors = await aiohttp_throughput(
                            t, stream, args.seconds, args.connections
                        )
                    row[t.name].update({"rps": round(rps, 1), "requests": total, "errors": errors})  # type: ignore[union-attr]
                relay_times = seq["relay"][0]
                floor = {
                    "added_p50_ms": round(percentile(relay_times, 50) - percentile(direct, 50), 3),
                    "added_p99_ms": round(percentile(relay_times, 99) - percentile(direct, 99), 3),
                }
                blocks = await in_blocks(targets[0], targets[1], stream, n, warmup=2)
                block_direct, block_ours = blocks["direct"][0], blocks["byenatos"][0]
                in_block = {
                    "added_p50_ms": round(percentile(block_ours, 50) - percentile(block_direct, 50), 3),
                    "added_p99_ms": round(percentile(block_ours, 99) - percentile(block_direct, 99), 3),
                    "errors": blocks["byenatos"][1],
                }
                if stream:
                    in_block["added_first_p50_ms"] = round(
                        percentile(blocks["byenatos"][2], 50) - percentile(blocks["direct"][2], 50), 3
                    )
                results[kind] = {**row, "tcp_relay": floor, "byenatos_in_blocks": in_block}
                _print(kind, row)
                print(f"  bare TCP relay (the floor of any proxy hop here): added p50 {floor['added_p50_ms']:.3f}, "
                      f"p99 {floor['added_p99_ms']:.3f}", flush=True)
                first = f", first event p50 {in_block['added_first_p50_ms']:.3f}" if stream else ""
                print(f"  byenatos in blocks of 25 (A B B A, no other request between two of its own): added "
                      f"p50 {in_block['added_p50_ms']:.3f}, p99 {in_block['added_p99_ms']:.3f}{first}", flush=True)
    finally:
        for proc in reversed(procs):
            await stop_process(proc)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _print(kind: str, row: dict[str, object]) -> None:
    print(f"\n{kind}")
    print(
        f"  {'target':9s} {'p50 ms':>8s} {'p99 ms':>8s} {'added p50':>10s} {'added p99':>10s} "
        f"{'req/s (64)':>11s} {'errors':>7s}"
    )
    for name, r in row.items():
        assert isinstance(r, dict)
        errors = r["errors"] + r["sequential_errors"]
        first = (
            f"   first event added p50 {r['added_first_p50_ms']:.3f} p99 {r['added_first_p99_ms']:.3f}"
            if "added_first_p50_ms" in r
            else ""
        )
        print(
            f"  {name:9s} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['added_p50_ms']:10.3f} "
            f"{r['added_p99_ms']:10.3f} {r['rps']:11.1f} {errors:7d}{first}"
        )
    ours, theirs = row["byenatos"], row["litellm"]
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    print(f"  throughput ByenatOS / LiteLLM: {ours['rps'] / max(theirs['rps'], 0.001):.1f}x", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
