"""Ingest throughput (records acknowledged per second, durable) and the embedding catch-up rate.

    .venv/bin/python -m bench.ingest [--records 10000] [--batch 100]

"Acknowledged" means `PersonalService.add` returned: the batch is committed to the encrypted
SQLite store (WAL) and survives kill -9. Vectors follow in the background; the catch-up rate
is records embedded (all-MiniLM-L6-v2, onnxruntime, one thread) and indexed in chromadb per second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta

from bench._util import temp_home

SUBJECTS = [
    "the billing migration",
    "my Spanish lessons",
    "the garden beds",
    "our Lisbon trip",
    "the Rust parser",
    "marathon training",
    "the quarterly report",
    "a sourdough starter",
    "the new apartment",
    "jazz piano",
    "the kids' school project",
    "tax paperwork",
    "the team offsite",
    "a chess opening",
    "home network setup",
    "the novel draft",
    "my sleep schedule",
    "the car insurance",
    "a React dashboard",
    "birdwatching notes",
]
VERBS = [
    "finished",
    "started",
    "reviewed",
    "worried about",
    "planned",
    "booked",
    "read about",
    "fixed",
    "postponed",
    "discussed",
    "sketched",
    "measured",
    "compared",
    "wrote down",
    "learned about",
]
DETAILS = [
    "before the deadline on Friday",
    "with help from Ana",
    "using the new checklist",
    "after a long call",
    "and it took longer than expected",
    "for the second time",
    "on the train home",
    "in the morning",
    "because the docs were unclear",
    "with a budget of 200 euros",
    "and found three bugs",
    "again tomorrow",
    "while it rained",
    "at the library",
    "for next month",
    "with a simpler approach",
]
WORDS = (
    "alpha amber anchor apple atlas autumn beacon birch bridge canyon cedar cipher cobalt comet coral "
    "crystal delta ember falcon fern glacier harbor hazel indigo island jasmine juniper kernel lantern "
    "lemon lotus maple meadow meteor nectar nova oasis olive opal orbit pepper pine prism quartz raven "
    "ridge river saffron sage shadow sierra spruce summit tango thistle tundra velvet violet willow zenith"
).split()


def make_records(n: int, *, seed: int = 7, apps: int = 10) -> list[dict]:
    """Varied, realistic-looking notes (every text unique) spread over two years and `apps` apps."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        tags = rng.sample(["work", "home", "travel", "health", "learning", "family", "money", "ideas"], k=2)
        extra = " ".join(rng.sample(WORDS, k=3))
        out.append(
            {
                "id": f"bench-{i}",
                "highlight": f"{rng.choice(VERBS).capitalize()} {rng.choice(SUBJECTS)} {rng.choice(DETAILS)} ({extra}).",
                "note": rng.choice(
                    [
                        "",
                        "",
                        f"Remember: {rng.choice(DETAILS)}.",
                        f"Idea {i}: {' '.join(rng.sample(WORDS, 6))}",
                    ]
                ),
                "tag": tags,
                "access": rng.choice(["private", "private", "shared", "public"]),
                "timestamp": (now - timedelta(minutes=rng.randint(0, 2 * 365 * 24 * 60))).isoformat(),
                "_app": f"app-{i % apps}",
            }
        )
    return out


async def ingest(personal, records: list[dict], batch: int = 100) -> float:
    """Submit in batches per app; returns acknowledged records per second."""
    from app.kernel.personal.service import Caller

    by_app: dict[str, list[dict]] = {}
    for r in records:
        by_app.setdefault(r["_app"], []).append({k: v for k, v in r.items() if k != "_app"})
    started = time.perf_counter()
    n = 0
    for app, recs in by_app.items():
        caller = Caller(app, frozenset({"hinata:write"}))
        for i in range(0, len(recs), batch):
            n += len(await personal.add(recs[i : i + batch], caller))
    return n / (time.perf_counter() - started)


async def catch_up(personal, timeout: float = 3600) -> float:
    """Records embedded and indexed per second until the queue is empty."""
    backlog = (await personal.status())["vector_backlog"]
    started = time.perf_counter()
    personal.want_vectors()
    await personal.wait_vectors(timeout)
    took = time.perf_counter() - started
    return backlog / took if took else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    home = temp_home()
    os.environ.update(BYENATOS_HOME=str(home), BYENATOS_SECRETS="file")
    from app.kernel.kernel import Kernel

    kernel = await Kernel().start()
    try:
        personal = kernel.personal
        await personal.ready()
        records = make_records(args.records)
        # Warm-up: the tokenizer and first-connection costs are not ingest.
        await ingest(personal, make_records(100, seed=99), args.batch)
        await personal.wait_vectors(600)
        rate = await ingest(personal, records, args.batch)
        print(
            f"ingest: {args.records} records in batches of {args.batch}: {rate:,.0f} acknowledged records/s"
        )
        vrate = await catch_up(personal)
        print(f"embedding catch-up: {vrate:,.0f} records/s (model load excluded, one ONNX thread)")
    finally:
        await kernel.stop()


if __name__ == "__main__":
    asyncio.run(main())
