"""Interactive latency under agent load, on one in-process llama.cpp model.

    cd /work/main && .venv/bin/python -m bench.interactive_under_load [--requests 5] [--tokens 48]

Four background agents generate, call after call, on one ~0.5B-shaped model
(bench/_small_model.py), through the kernel's router and scheduler as the gateway would
send them. Meanwhile an interactive request (a chat app, the popup) asks for a short answer.
Measured: its time to first token (TTFT), and the agents' throughput, in four runs:

- idle: the interactive request alone on the idle model (the reference);
- alone: the four agents without it (the throughput reference);
- ours: agents as background programs, the request interactive; LAS scheduling, and the
  llama.cpp driver pausing a background generation at a token boundary (its slot lent);
- FIFO: every call in arrival order, nothing preempted (how Ollama and LM Studio queue):
  the request waits for the generations admitted before it.

Targets: ours within 1.5x of idle TTFT; the agents' throughput within 10% of alone. The
agents' throughput under load is given two ways: tokens over the whole wall time, and over
the wall time less the time the interactive requests held the model (they take the model
away by design: what is left is what the switching itself costs). Medians of one run; the
machine is shared with other work, so figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass

from app.kernel.canonical import ChatRequest
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.llamacpp import LlamaCppDriver
from app.kernel.events import EventBus
from app.kernel.scheduler import Program, ProgramClass, Scheduler, run_as
from app.kernel.socket.router import RoutePlan, Router
from bench._small_model import DESCRIPTION, small_model

AGENTS = 4
TEXT = ("Read my notes about the garden, the water bill and the people who will come for the day, "
        "then write what I should do first and why, with the time each part will take.")  # fmt: skip


def request(text: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(model="local/m", messages=[{"role": "user", "content": text}], max_tokens=max_tokens,
                       temperature=0.0)


@dataclass
class Load:
    tokens: int = 0  # completion tokens of finished background calls
    calls: int = 0
    started: float = 0.0
    ended: float = 0.0

    @property
    def wall(self) -> float:
        return self.ended - self.started


class Bench:
    def __init__(self, path: str, threads: int, n_ctx: int, *, preempt: bool, policy: str) -> None:
        self.driver = LlamaCppDriver(ProviderConfig(id="local", kind="llamacpp", options={
            "models": [path], "n_threads": threads, "n_ctx": n_ctx, "preempt": preempt}))
        self.router = Router(lambda _p: self.driver, EventBus(), scheduler=Scheduler(policy))
        self.spec = None
        self.plan: RoutePlan | None = None

    async def __aenter__(self) -> Bench:
        (self.spec,) = await self.driver.list_models()
        await self.driver.load(self.spec)
        self.plan = RoutePlan(tiers=[[self.spec]], key="bench")
        # every job's report, as the model's thread finishes it (its own time on the model)
        self.reports: list = []
        worker = self.driver._workers[self.spec.name]
        run = worker._run

        def recording_run(job, work):
            try:
                return run(job, work)
            finally:
                self.reports.append((job.rank, job.report))

        worker._run = recording_run
        return self

    def reports_since(self, mark: int, rank: int) -> list:
        return [r for k, r in self.reports[mark:] if k == rank]

    async def __aexit__(self, *exc) -> None:
        await self.driver.aclose()

    async def stream(self, req: ChatRequest, program: Program) -> tuple[float, float, int]:
        """(seconds to the first text, seconds to the end, completion tokens) of one routed stream."""
        started = time.perf_counter()
        first, tokens = None, 0
        with run_as(program):
            stream, _ = await self.router.stream(self.plan, lambda d: d.driver.stream(req, d.spec))
            try:
                async for chunk in stream:
                    if first is None and chunk.text():
                        first = time.perf_counter() - started
                    if chunk.usage is not None:
                        tokens = chunk.usage.completion_tokens
            finally:
                await stream.aclose()
        return first if first is not None else float("nan"), time.perf_counter() - started, tokens

    async def agents(self, load: Load, stop: asyncio.Event, klass: ProgramClass, max_tokens: int) -> None:
        async def agent(i: int) -> None:
            step = 0
            program = Program(f"agent#{i}", klass)
            while not stop.is_set():
                step += 1
                _, _, tokens = await self.stream(request(f"Agent {i}, step {step}. {TEXT}", max_tokens), program)
                load.tokens += tokens
                load.calls += 1

        load.started = time.perf_counter()
        await asyncio.gather(*(agent(i) for i in range(AGENTS)))
        load.ended = time.perf_counter()


async def interactive(bench: Bench, n: int, program: Program, answer_tokens: int) -> tuple[float, float]:
    ttft, total, _ = await bench.stream(request(f"Question {n}: what is on my list today?", answer_tokens), program)
    return ttft, total


async def under_load(bench: Bench, *, requests: int, agent_class: ProgramClass, program: Program,
                     max_tokens: int, answer_tokens: int, gap: float) -> tuple[list[float], list[float], Load]:
    load, stop = Load(), asyncio.Event()
    agents = asyncio.create_task(bench.agents(load, stop, agent_class, max_tokens))
    # the agents are under way: four slots held, a generation running, the others queued on the model
    while bench.router.deployment(bench.spec).in_flight < AGENTS:  # noqa: ASYNC110 (a counter, no event)
        await asyncio.sleep(0.05)
    await asyncio.sleep(gap)
    ttfts, totals = [], []
    for n in range(requests):
        ttft, total = await interactive(bench, n, program, answer_tokens)
        ttfts.append(ttft)
        totals.append(total)
        print(f"    request {n}: TTFT {ttft * 1e3:.0f} ms, answered in {total * 1e3:.0f} ms", flush=True)
        await asyncio.sleep(gap)
    stop.set()
    await agents
    return ttfts, totals, load


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5, help="interactive requests per run")
    parser.add_argument("--fifo-requests", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48, help="tokens per background call")
    parser.add_argument("--answer", type=int, default=16, help="tokens of the interactive answer")
    parser.add_argument("--alone", type=float, default=30.0, help="seconds of the agents-alone run")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between interactive requests")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--n-ctx", type=int, default=1024)
    args = parser.parse_args()

    import llama_cpp

    path = str(small_model())
    print(f"model: {DESCRIPTION}; {args.threads} threads, n_ctx {args.n_ctx}, llama-cpp-python "
          f"{llama_cpp.__version__}; {AGENTS} agents x {args.tokens} tokens a call, answers of {args.answer}")
    popup = Program("popup", ProgramClass.INTERACTIVE)

    async with Bench(path, args.threads, args.n_ctx, preempt=True, policy="las") as bench:
        await interactive(bench, -1, popup, args.answer)  # warm-up

        async def idle_phase(label: str, first: int) -> list[float]:
            print(f"idle ({label}): the interactive request alone", flush=True)
            ttfts = []
            for n in range(args.requests):
                ttft, total = await interactive(bench, first + n, popup, args.answer)
                ttfts.append(ttft)
                print(f"    request {n}: TTFT {ttft * 1e3:.0f} ms, answered in {total * 1e3:.0f} ms", flush=True)
            return ttfts

        idle = await idle_phase("before", 100)

        print(f"alone: {AGENTS} background agents for ~{args.alone:.0f} s", flush=True)
        mark = len(bench.reports)
        alone, stop = Load(), asyncio.Event()
        agents = asyncio.create_task(bench.agents(alone, stop, ProgramClass.BACKGROUND, args.tokens))
        await asyncio.sleep(args.alone)
        stop.set()
        await agents
        alone_jobs = bench.reports_since(mark, ProgramClass.BACKGROUND.rank)
        print(f"    {alone.tokens} tokens in {alone.wall:.1f} s ({alone.calls} calls)", flush=True)

        print("ours: background agents, interactive request; LAS + preemption", flush=True)
        mark = len(bench.reports)
        ours, _ours_total, ours_load = await under_load(
            bench, requests=args.requests, agent_class=ProgramClass.BACKGROUND, program=popup,
            max_tokens=args.tokens, answer_tokens=args.answer, gap=args.gap)
        ours_jobs = bench.reports_since(mark, ProgramClass.BACKGROUND.rank)
        ours_ui = bench.reports_since(mark, ProgramClass.INTERACTIVE.rank)
        activity = bench.driver.activity(bench.spec)
        switches = [r.save_seconds + r.restore_seconds for r in ours_jobs if r.preempted]
        print(f"    {ours_load.tokens} background tokens in {ours_load.wall:.1f} s; {activity.preemptions} "
              f"preemptions (save+restore {sum(switches) * 1e3:.0f} ms in all), peak state held "
              f"{bench.driver._workers[bench.spec.name].peak_saved_bytes / 2**20:.1f} MiB", flush=True)

        idle += await idle_phase("after", 200)

    async with Bench(path, args.threads, args.n_ctx, preempt=False, policy="fifo") as bench:
        print("FIFO: every call in arrival order, no preemption", flush=True)
        same = ProgramClass.NORMAL  # one class for all: arrival order on the deployment and the model
        fifo, _fifo_total, fifo_load = await under_load(
            bench, requests=args.fifo_requests, agent_class=same, program=Program("popup", same),
            max_tokens=args.tokens, answer_tokens=args.answer, gap=args.gap)
        print(f"    {fifo_load.tokens} background tokens in {fifo_load.wall:.1f} s", flush=True)

    def on_model(jobs: list) -> float:
        """Background tokens per second of the model's time spent on them (paused time excluded)."""
        return sum(r.sampled_tokens for r in jobs) / sum(r.seconds - r.paused_seconds for r in jobs)

    med = statistics.median
    alone_rate = alone.tokens / alone.wall
    ours_rate = ours_load.tokens / ours_load.wall
    ui_time = sum(r.seconds for r in ours_ui)  # the interactive requests' own time on the model
    ours_net = ours_load.tokens / (ours_load.wall - ui_time)
    fifo_rate = fifo_load.tokens / fifo_load.wall
    print("\nsummary (medians):")
    print(f"  TTFT idle  {med(idle) * 1e3:8.0f} ms  (before and after the loaded run, {len(idle)} requests)")
    print(f"  TTFT ours  {med(ours) * 1e3:8.0f} ms  = {med(ours) / med(idle):.2f}x idle (target <= 1.5x); "
          f"waited on the model {med(r.waited_seconds for r in ours_ui) * 1e3:.0f} ms")
    print(f"  TTFT FIFO  {med(fifo) * 1e3:8.0f} ms  = {med(fifo) / med(idle):.2f}x idle; ours is "
          f"{med(fifo) / med(ours):.1f}x faster")
    print(f"  agents alone        {alone_rate:6.2f} tok/s wall; {on_model(alone_jobs):.2f} tok/s of model time")
    print(f"  agents, ours        {ours_rate:6.2f} tok/s wall = {ours_rate / alone_rate:.2f}x alone; "
          f"{ours_net:.2f} tok/s less the requests' {ui_time:.0f} s on the model = {ours_net / alone_rate:.2f}x "
          f"(target >= 0.90x); {on_model(ours_jobs):.2f} tok/s of model time = "
          f"{on_model(ours_jobs) / on_model(alone_jobs):.2f}x")
    print(f"  agents, FIFO        {fifo_rate:6.2f} tok/s wall = {fifo_rate / alone_rate:.2f}x alone")

if __name__ == "__main__":
    asyncio.run(main())
