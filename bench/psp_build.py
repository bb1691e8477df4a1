"""PSP build time and memory with a large personal store (default 100k records).

    .venv/bin/python -m bench.psp_build [--records 100000] [--home DIR] [--queries 300]

Builds (or reuses, with --home) a store of synthetic notes from 10 apps, embeds them all with
the local model, then times `PersonalService.build_psp` for one app with `hinata:read`
(its own records plus everything shared: ~60% of the store visible) over distinct queries.
Each build is the full query-time path: embed the query, the vector queries, the FTS query,
ranking, rendering. Target: p95 under 20 ms (the design documents ask under 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from pathlib import Path

import psutil

from bench._util import percentile, temp_home
from bench.ingest import SUBJECTS, VERBS, WORDS, catch_up, ingest, make_records

QUESTION_STARTS = [
    "what did I note about",
    "remind me about",
    "any updates on",
    "help me plan",
    "summarise",
    "what should I do next for",
    "when did I last work on",
    "ideas for",
]


def queries(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(QUESTION_STARTS)} {rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(WORDS)}?"
        for _ in range(n)
    ]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--home", type=Path, help="reuse this ByenatOS home (built on first use)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--budget", type=int, default=2048)
    args = ap.parse_args()
    home = args.home or temp_home()
    os.environ.update(BYENATOS_HOME=str(home), BYENATOS_SECRETS="file")
    from app.kernel.kernel import Kernel
    from app.kernel.personal.service import Caller

    proc = psutil.Process()
    kernel = await Kernel().start()
    try:
        personal = kernel.personal
        await personal.ready()
        have = (await personal.status())["records"]
        if have < args.records:
            print(
                f"building a store of {args.records:,} records in {home} (embedding takes a while)…",
                flush=True,
            )
            t = time.perf_counter()
            rate = await ingest(personal, make_records(args.records)[have:])
            print(f"  ingest: {rate:,.0f} acknowledged records/s", flush=True)
            vrate = await catch_up(personal, timeout=6 * 3600)
            print(
                f"  embedding catch-up: {vrate:,.0f} records/s; built in {time.perf_counter() - t:,.0f} s",
                flush=True,
            )
        personal.want_vectors()
        await personal.wait_vectors(3600)
        status = await personal.status()
        caller = Caller("app-3", frozenset({"hinata:read", "chat"}))
        visible = personal.store.count(caller.visibility())
        qs = queries(args.queries + 20)
        for q in qs[:20]:  # warm-up: model session, pool caches, SQLite page cache
            await personal.build_psp(caller, q, budget=args.budget)
        times, items, tokens = [], [], []
        for q in qs[20:]:
            psp = await personal.build_psp(caller, q, budget=args.budget)
            times.append(psp.took_ms)
            items.append(len(psp.items))
            tokens.append(psp.tokens)
        personal.store.generation += 1  # what the first request after a write pays: pools rebuilt
        cold = []
        for q in qs[:10]:
            personal.store.generation += 1
            cold.append((await personal.build_psp(caller, q, budget=args.budget)).took_ms)
        rss = proc.memory_info().rss / 2**20
        print(
            f"store: {status['records']:,} records ({visible:,} visible to the app), retrieval {status['retrieval']}"
        )
        print(
            f"PSP build ({args.queries} distinct queries, budget {args.budget} tokens, "
            f"~{sum(items) / len(items):.0f} items, ~{sum(tokens) / len(tokens):.0f} tokens): "
            f"p50 {percentile(times, 50):.1f} ms, p95 {percentile(times, 95):.1f} ms, "
            f"p99 {percentile(times, 99):.1f} ms"
        )
        print(
            f"first build after a write (standing pools rebuilt): p50 {percentile(cold, 50):.1f} ms, "
            f"max {max(cold):.1f} ms"
        )
        print(f"process RSS with the store, vectors and model loaded: {rss:,.0f} MB")
    finally:
        await kernel.stop()


if __name__ == "__main__":
    asyncio.run(main())
