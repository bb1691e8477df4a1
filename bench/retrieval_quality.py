"""Retrieval quality on a small personal-memory set: recall@5 of the evidence records.

    .venv/bin/python -m bench.retrieval_quality [--distractors 2000] [--precision int8|fp32]

bench/data/memory_records.jsonl holds 60 notes a person might keep (health, family, work,
travel, money…); bench/data/memory_questions.jsonl 36 questions, each with the ids of the
notes that answer it. Many questions use other words than their notes ("daughter" for Mia,
"Portugal's capital" for Lisbon, "home loan" for mortgage), others share words with notes
that do not answer them. Synthetic distractor notes (bench/ingest.py) are mixed in, some on
the same subjects. Compared: hybrid (vectors + BM25, reciprocal-rank fusion, as the PSP's
Context layer uses), full-text only, vectors only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import orjson

from bench._util import temp_home
from bench.ingest import ingest, make_records

DATA = Path(__file__).resolve().parent / "data"
K = 5


def load(name: str) -> list[dict]:
    return [orjson.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distractors", type=int, default=2000)
    ap.add_argument("--precision", choices=("int8", "fp32"), default=None)
    args = ap.parse_args()
    os.environ.update(BYENATOS_HOME=str(temp_home()), BYENATOS_SECRETS="file")
    if args.precision:
        os.environ["BYENATOS_EMBED_PRECISION"] = args.precision
    from app.kernel.kernel import Kernel
    from app.kernel.personal import retrieval
    from app.kernel.personal.service import Caller

    kernel = await Kernel().start()
    try:
        personal = kernel.personal
        await personal.ready()
        user = Caller.user()
        await personal.add(load("memory_records.jsonl"), user)
        distractors = make_records(args.distractors, seed=3, apps=1)
        for r in distractors:
            r["_app"] = "user"
        await ingest(personal, distractors)
        personal.want_vectors()
        await personal.wait_vectors(3600)
        store, vectors, model = personal.store, personal.vectors, personal.embedder.model()
        vis = user.visibility()
        questions = load("memory_questions.jsonl")
        key_of = {r["id"]: r["key"] for r in (store.get(q) for qs in questions for q in qs["evidence"]) if r}
        results: dict[str, list[float]] = {"hybrid": [], "fts": [], "vector": []}
        mrr: dict[str, list[float]] = {m: [] for m in results}
        for q in questions:
            qvec = model.encode([q["question"]])[0]
            evidence = {key_of[e] for e in q["evidence"]}
            for mode in results:
                hits = [k for k, _ in retrieval.search(store, vectors, qvec, q["question"], vis, K, mode)]
                results[mode].append(len(evidence & set(hits)) / len(evidence))
                first = next((i for i, k in enumerate(hits) if k in evidence), None)
                mrr[mode].append(0.0 if first is None else 1.0 / (first + 1))
        n = len(questions)
        total = await personal.status()
        print(
            f"{n} questions over {total['records']:,} records ({args.distractors:,} distractors), "
            f"model {model.name}"
        )
        for mode, label in (
            ("hybrid", "hybrid (vectors + BM25, RRF)"),
            ("fts", "full-text only (BM25)"),
            ("vector", "vectors only"),
        ):
            print(f"  {label:<30} recall@{K} {sum(results[mode]) / n:.3f}   MRR@{K} {sum(mrr[mode]) / n:.3f}")
    finally:
        await kernel.stop()


if __name__ == "__main__":
    asyncio.run(main())
