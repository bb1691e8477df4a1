"""The socket's numbers: swap time, requests lost while swapping, failover cost, router overhead.

    .venv/bin/python -m bench.socket_bench

Upstreams are fake OpenAI servers in their own processes (0 ms model latency, a few ms per
chunk for streams); the kernel runs in this process, as it does inside the daemon.
Targets (issue #3): swap → served by the new model < 5 ms p99; 0 failed requests during
20 swaps under 50 streaming clients; failover from a refusing primary adds < 50 ms p99;
router overhead < 0.3 ms p50.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time

from app.kernel.canonical import ChatMessage, ChatRequest, ModelSpec
from app.kernel.config import Paths
from app.kernel.kernel import Kernel
from app.kernel.socket.manager import SwapStrategy
from app.kernel.socket.router import RoutePlan
from bench._util import percentile, start_fake_upstream, stop_process

ASK = ChatRequest(model="default", messages=[ChatMessage(role="user", content="hi")], max_tokens=16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 50):.3f} ms, p99 {percentile(values, 99):.3f} ms"


async def main() -> None:
    os.environ["BYENATOS_SECRETS"] = "file"
    logging.getLogger("app.kernel.socket.router").setLevel(logging.ERROR)  # the dead primary is expected
    upstreams = [await start_fake_upstream(0.0) for _ in range(2)]
    root = tempfile.mkdtemp(prefix="byenatos-bench-")
    kernel = await Kernel(_paths(root)).start()
    await kernel.policy.stop()  # measure the socket alone, no automatic swaps
    try:
        for name, (_, base) in zip("ab", upstreams, strict=True):
            kernel.registry.add_provider(name, "openai", base_url=base)
            kernel.registry.upsert_models(name, [ModelSpec(id=f"{name}/m", name="m", provider=name)])
        dead = free_port()
        kernel.registry.add_provider("dead", "openai", base_url=f"http://127.0.0.1:{dead}/v1")
        kernel.registry.upsert_models("dead", [ModelSpec(id="dead/m", name="m", provider="dead")])
        await kernel.set_default_model("a/m")
        for _ in range(50):  # warm connections and code paths
            await kernel.chat(ASK)
            await kernel.chat(ASK.model_copy(update={"model": "b/m"}))

        await bench_swap(kernel)
        await bench_swaps_under_load(kernel)
        await bench_failover(kernel)
        await bench_router_overhead(kernel)
    finally:
        await kernel.stop()
        for proc, _ in upstreams:
            await stop_process(proc)


def _paths(root: str) -> Paths:
    from pathlib import Path

    r = Path(root)
    return Paths(r / "config", r / "data", r / "cache")


async def bench_swap(kernel: Kernel, n: int = 300) -> None:
    switch, served = [], []
    target = "b/m"
    for _ in range(n):
        t0 = time.perf_counter()
        await kernel.socket.swap("default", target, SwapStrategy.GRACEFUL)
        t1 = time.perf_counter()
        _, spec = await kernel.chat_routed(ASK)
        t2 = time.perf_counter()
        assert spec.id == target, spec.id
        switch.append((t1 - t0) * 1000)
        served.append((t2 - t0) * 1000)
        target = "a/m" if target == "b/m" else "b/m"
    print(f"swap() call (switch + persist):            {ms(switch)}")
    print(f"swap() → next request served by new model: {ms(served)}   target p99 < 5 ms")


async def bench_swaps_under_load(kernel: Kernel, clients: int = 50, swaps: int = 20) -> None:
    stop = asyncio.Event()
    done, failed, by_model = 0, 0, {"a/m": 0, "b/m": 0}

    async def client() -> None:
        nonlocal done, failed
        while not stop.is_set():
            try:
                chunks = await kernel.stream(ASK.model_copy(update={"stream": True}))
                async for _ in chunks:
                    pass
                by_model[chunks.served_by.id] += 1
                done += 1
            except Exception as e:  # counted: this is what the benchmark is about
                failed += 1
                print("  failed:", type(e).__name__, e)

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    target = "b/m"
    for _ in range(swaps):
        await asyncio.sleep(0.05)  # let requests run between swaps (load generation, not a test wait)
        await kernel.socket.swap("default", target, SwapStrategy.GRACEFUL)
        target = "a/m" if target == "b/m" else "b/m"
    stop.set()
    await asyncio.gather(*tasks)
    print(f"{swaps} graceful swaps under {clients} streaming clients: {done} streams completed, "
          f"{failed} failed (a: {by_model['a/m']}, b: {by_model['b/m']})   target 0 failed")


async def bench_failover(kernel: Kernel, n: int = 300) -> None:
    specs = kernel.registry.all_models()
    direct, cold, steady = [], [], []
    to_b = RoutePlan(tiers=[[specs["b/m"]]], key="bench-b")
    failover = RoutePlan(tiers=[[specs["dead/m"]], [specs["b/m"]]], key="bench-f")
    for _ in range(n):
        t0 = time.perf_counter()
        await kernel.router.run(to_b, lambda d: d.driver.chat(ASK, d.spec))
        direct.append((time.perf_counter() - t0) * 1000)
        kernel.router.forget_provider("dead")  # every request meets the dead primary afresh
        t0 = time.perf_counter()
        _, info = await kernel.router.run(failover, lambda d: d.driver.chat(ASK, d.spec))
        cold.append((time.perf_counter() - t0) * 1000)
        assert info.deployment.id == "b/m"
        t0 = time.perf_counter()
        await kernel.router.run(failover, lambda d: d.driver.chat(ASK, d.spec))  # circuit now open
        steady.append((time.perf_counter() - t0) * 1000)
    extra_cold = [c - d for c, d in zip(cold, direct, strict=True)]
    print(f"request straight to the fallback:          {ms(direct)}")
    print(f"primary refusing, each request tries it:    {ms(cold)}  (added p50 "
          f"{percentile(extra_cold, 50):.3f} ms, p99 {percentile(extra_cold, 99):.3f} ms)   target added p99 < 50 ms")
    print(f"primary refusing, circuit open:             {ms(steady)}")

    # A hanging primary costs the configured timeout, then the fallback answers.
    from tests.fakes.openai_upstream import FakeOpenAI
    from tests.fakes.upstream import Fault

    hang = await FakeOpenAI().start()
    hang.fault = Fault(kind="hang")
    kernel.settings.request_timeout = 0.5
    kernel.registry.add_provider("hang", "openai", base_url=hang.api_base)
    kernel.registry.upsert_models("hang", [ModelSpec(id="hang/m", name="m", provider="hang")])
    await kernel.reset_driver("hang")
    plan = RoutePlan(tiers=[[kernel.registry.all_models()["hang/m"]], [specs["b/m"]]], key="bench-h")
    kernel.router.policy.max_retries = 0
    t0 = time.perf_counter()
    _, info = await kernel.router.run(plan, lambda d: d.driver.chat(ASK, d.spec))
    took = time.perf_counter() - t0
    print(f"primary hanging, timeout 0.5 s:             answered by {info.deployment.id} after {took:.3f} s "
          "(bounded by the timeout)")
    kernel.router.policy.max_retries = 2
    await hang.stop()


async def bench_router_overhead(kernel: Kernel, n: int = 20000) -> None:
    spec = kernel.registry.all_models()["a/m"]
    plan = RoutePlan(tiers=[[spec]], key="bench-o")

    async def noop(_dep: object) -> None:
        return None

    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await kernel.router.run(plan, noop)
        samples.append((time.perf_counter() - t0) * 1e6)
    print(f"router.run overhead (no-op upstream call):  p50 {percentile(samples, 50):.1f} µs, "
          f"p99 {percentile(samples, 99):.1f} µs   target p50 < 300 µs")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        kernel.plan_for("default")
        samples.append((time.perf_counter() - t0) * 1e6)
    print(f"socket alias → route plan:                  p50 {percentile(samples, 50):.1f} µs")


if __name__ == "__main__":
    asyncio.run(main())
