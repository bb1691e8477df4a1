"""Generation throughput: ByenatOS's llama.cpp driver vs llama-cpp-python called directly.

    cd /work/main && .venv/bin/python -m bench.llamacpp_throughput [--tokens 128] [--runs 7]

Both sides load the same GGUF (a random-weight llama written for the run, ~50 MB by
default so that generation, not Python, dominates), stream N tokens greedily from the
same prompt, and are timed alternately so drift hits both alike. The driver adds a
worker thread, a loop hop per token and canonical chunk objects; target: within 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.kernel.canonical import ChatRequest
from app.kernel.drivers.base import ProviderConfig
from app.kernel.drivers.llamacpp import LlamaCppDriver
from tests.fakes.gguf_models import write_tiny_llama_gguf

MESSAGES = [{"role": "user", "content": "Write a long story about the world."}]


@dataclass
class Run:
    tokens: int
    wall: float  # seconds
    cpu: float  # process CPU seconds, all threads: what the run cost the machine

    @property
    def rate(self) -> float:
        return self.tokens / self.wall


def direct_run(llama, tokens: int) -> Run:
    wall, cpu, produced = time.perf_counter(), time.process_time(), 0
    for chunk in llama.create_chat_completion(MESSAGES, max_tokens=tokens, temperature=0.0, stream=True):
        produced += bool(chunk["choices"][0]["delta"].get("content"))
    return Run(produced, time.perf_counter() - wall, time.process_time() - cpu)


async def driver_run(driver: LlamaCppDriver, spec, tokens: int) -> Run:
    request = ChatRequest(model=spec.id, messages=MESSAGES, max_tokens=tokens, temperature=0.0)
    wall, cpu, produced = time.perf_counter(), time.process_time(), 0
    async for chunk in driver.stream(request, spec):
        produced += bool(chunk.text())
    return Run(produced, time.perf_counter() - wall, time.process_time() - cpu)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--n-embd", type=int, default=512)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    args = parser.parse_args()

    import llama_cpp

    with tempfile.TemporaryDirectory(prefix="byenatos-bench-") as tmp:
        path = write_tiny_llama_gguf(
            Path(tmp) / "bench-model.gguf", seed=3, n_embd=args.n_embd, n_layers=args.n_layers, n_head=8
        )
        print(f"model: {path.stat().st_size / 1e6:.0f} MB f32, {args.n_layers} layers x {args.n_embd}; "
              f"{args.tokens} tokens x {args.runs} runs, {args.threads} threads, llama-cpp-python "
              f"{llama_cpp.__version__}")  # fmt: skip
        llama = llama_cpp.Llama(str(path), n_ctx=512, n_threads=args.threads, verbose=False)
        driver = LlamaCppDriver(
            ProviderConfig(
                id="local", kind="llamacpp", options={"models": [str(path)], "n_threads": args.threads}
            )
        )
        (spec,) = await driver.list_models()
        await driver.load(spec)
        try:
            direct_run(llama, args.tokens)  # warm-up: caches, page faults, thread pools
            await driver_run(driver, spec, args.tokens)
            direct: list[Run] = []
            via_driver: list[Run] = []
            for _ in range(args.runs):  # alternate, so load from elsewhere hits both alike
                direct.append(direct_run(llama, args.tokens))
                via_driver.append(await driver_run(driver, spec, args.tokens))
            for run in direct + via_driver:
                assert run.tokens == args.tokens, f"a run produced {run.tokens} tokens, not {args.tokens}"
        finally:
            await driver.aclose()
            llama.close()

    for label, runs in (("direct llama-cpp-python", direct), ("ByenatOS driver stream ", via_driver)):
        rates = [r.rate for r in runs]
        cpu_us = statistics.median(r.cpu / r.tokens for r in runs) * 1e6
        print(f"{label}: {statistics.median(rates):7.1f} tok/s median (min {min(rates):.1f}, max {max(rates):.1f}); "
              f"{cpu_us:.0f} us CPU per token")  # fmt: skip
    # each driver run against the direct run just before it: drift cancels out
    ratio = statistics.median(v.rate / d.rate for d, v in zip(direct, via_driver, strict=True))
    print(f"driver / direct (median of paired runs): {ratio:.3f}  "
          f"({'within' if ratio >= 0.95 else 'OUTSIDE'} the 5% target)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
