"""Where a proxy hop's wake-ups land: the scheduler's view of direct and gateway requests.

    sudo .venv/bin/python -m bench.hop_wakeups [--latency-ms 50] [--requests 40] [--stream]

One sequential client sends the same chat completion, alternately, straight to the fake
upstream of bench.gateway_vs_litellm and through `byenatos serve`, while `perf sched record`
traces every CPU. Then, for each pair of processes (who woke whom), it prints how many wakes put
the wakee on the waker's own vCPU or on another one, and the median time from the wake to the
wakee running. On the 2-vCPU development VM a wake onto the other, idle vCPU costs 50-95 us
(whether it halts or polls when idle) against 15-20 us onto the waker's own; docs/gateway.md
§ How fast explains what this means for the gateway.

Needs `perf` (`apt-get install linux-perf`), root, and tracefs (mounted here if it is not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench._util import start_fake_upstream, stop_process
from bench.relay_floor import start_gateway

_EVENT = re.compile(r"\s*(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")


@dataclass(frozen=True)
class Wake:
    waker: str
    wakee: str
    same_cpu: bool
    latency_us: float
    # The waker's own part, when this is the first wake it made since it was woken itself (in the
    # same run, before it slept): who woke it, and how long from then until this wake.
    waker_woken_by: str | None = None
    waker_work_us: float | None = None


def read_wakes(perf_script: str, names: dict[int, str]) -> list[Wake]:
    """The wakes between the named processes in `perf script` output (pid/tid, cpu, time,
    event, trace fields): each from its sched_waking to the wakee running. A wake of a task that
    is still on a CPU (it was about to sleep) is not a wake-up and is left out.

    The trace sometimes lacks the switch from an idle CPU's idle task to the wakee; then the
    wakee's first own event tells when it ran: a sched_stat_runtime at T for R ns of running
    means it started at T - R (or at its first event, if earlier)."""
    running: dict[int, int] = {}  # cpu → pid on it
    # wakee pid → (time, waker, waker's cpu, who woke the waker, the waker's µs of work since)
    pending: dict[int, tuple[float, str, int, str | None, float | None]] = {}
    seen: dict[int, float] = {}  # pending wakee → its first own event (it is running)
    started: dict[int, tuple[float, str]] = {}  # woken pid → (when it began to run, who woke it)
    wakes: list[Wake] = []

    def ran(pid: int, cpu: int, at: float) -> None:
        seen.pop(pid, None)
        woken_at, waker, waker_cpu, by, worked = pending.pop(pid)
        wakes.append(Wake(waker, names[pid], cpu == waker_cpu, (at - woken_at) * 1e6, by, worked))
        started[pid] = (at, waker)

    for line in perf_script.splitlines():
        m = _EVENT.match(line)
        if m is None:
            continue
        tid, cpu, at, event, fields = int(m.group(2)), int(m.group(3)), float(m.group(4)), m.group(5), m.group(6)
        if tid in pending:  # the wakee is running: its switch-in was not in the trace
            first = seen.setdefault(tid, at)
            if event == "sched_stat_runtime":  # one comes before every switch-out
                runtime_ns = int(re.search(r"runtime=(\d+)", fields).group(1))  # type: ignore[union-attr]
                ran(tid, cpu, min(first, at - runtime_ns / 1e9))
        if event == "sched_waking":
            wakee = int(re.search(r"\bpid=(\d+)", fields).group(1))  # type: ignore[union-attr]
            if wakee in names and tid in names:
                since = started.pop(tid, None)  # only its first wake after being woken has a work time
                if wakee not in running.values():
                    by, worked = (since[1], (at - since[0]) * 1e6) if since else (None, None)
                    pending[wakee] = (at, names[tid], cpu, by, worked)
        elif event == "sched_switch":
            if re.search(r"prev_state=[SD]", fields):  # it went to sleep: its run, and its work, ended
                started.pop(int(re.search(r"prev_pid=(\d+)", fields).group(1)), None)  # type: ignore[union-attr]
            nxt = int(re.search(r"next_pid=(\d+)", fields).group(1))  # type: ignore[union-attr]
            running[cpu] = nxt
            if nxt in pending:
                ran(nxt, cpu, at)
    return wakes


def report(wakes: list[Wake]) -> list[str]:
    groups: dict[tuple[str, str], list[Wake]] = defaultdict(list)
    for wake in wakes:
        groups[(wake.waker, wake.wakee)].append(wake)
    lines = []
    for (waker, wakee), group in sorted(groups.items()):
        parts = []
        for same, label in ((True, "its own vCPU"), (False, "the other")):
            chosen = [w.latency_us for w in group if w.same_cpu is same]
            median = f", median {statistics.median(chosen):.0f} us" if chosen else ""
            parts.append(f"{len(chosen)} onto {label}{median}")
        lines.append(f"  {waker:>8s} woke {wakee:<8s} {'; '.join(parts)}")
    hops: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for wake in wakes:
        if wake.waker_work_us is not None and wake.waker_woken_by is not None:
            hops[(wake.waker_woken_by, wake.waker, wake.wakee)].append(wake.waker_work_us)
    for (before, middle, after), times in sorted(hops.items()):
        if middle == "gateway":
            lines.append(f"  the gateway's work from {before}'s wake to waking {after}: "
                         f"median {statistics.median(times):.0f} us ({len(times)} hops)")
    return lines


async def one(session: aiohttp.ClientSession, url: str, body: dict, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session.post(url, json=body, headers=headers) as r:
        assert r.status == 200, r.status
        await r.read()


async def measure(latency_ms: float, requests: int, stream: bool, perf: str) -> None:
    upstream, base = await start_fake_upstream(latency_ms / 1000)
    gateway, gateway_url, token = await start_gateway(base)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": stream}
    data = Path(tempfile.mkdtemp(prefix="byenatos-wakes-")) / "perf.data"
    try:
        async with aiohttp.ClientSession() as session:
            async def rounds(n: int) -> None:
                for _ in range(n):
                    await one(session, base + "/chat/completions", {**body, "model": "m"})
                    await one(session, gateway_url, {**body, "model": "up/gpt-fake-mini"}, token)

            await rounds(20)  # warm-up: connections open, lazy imports done
            recorder = await asyncio.create_subprocess_exec(perf, "sched", "record", "-a", "-o", str(data),
                                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.0)  # perf has no ready signal; it traces nothing of ours meanwhile
            await rounds(requests)
            recorder.send_signal(signal.SIGINT)
            await recorder.wait()
        script = (await asyncio.to_thread(
            subprocess.run, [perf, "script", "-i", str(data), "-F", "pid,tid,cpu,time,event,trace"],
            capture_output=True, text=True, check=True)).stdout
    finally:
        for proc in (gateway, upstream):
            await stop_process(proc)
        shutil.rmtree(data.parent, ignore_errors=True)
    names = {os.getpid(): "client", gateway.pid: "gateway", upstream.pid: "upstream"}
    mode = "stream" if stream else "non-stream"
    print(f"{latency_ms:g} ms upstream, {mode}, {requests} requests each way; wake-ups between the processes:")
    print("\n".join(report(read_wakes(script, names))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    perf = shutil.which("perf")
    if perf is None or os.geteuid() != 0:
        sys.exit("bench.hop_wakeups needs `perf` (apt-get install linux-perf) and root")
    if not Path("/sys/kernel/tracing/events").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=False)
    asyncio.run(measure(args.latency_ms, args.requests, args.stream, perf))


if __name__ == "__main__":
    main()
