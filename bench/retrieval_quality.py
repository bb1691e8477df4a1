"""Retrieval quality on a small personal-memory set: recall@5 of the evidence records.

    .venv/bin/python -m bench.retrieval_quality [--distractors 2000] [--runtime numpy|onnxruntime]
                                                [--precision int8|fp32]

bench/data/memory_records.jsonl holds 60 notes a person might keep (health, family, work,
travel, money…); bench/data/memory_questions.jsonl 36 questions, each with the ids of the
notes that answer it. Many questions use other words than their notes ("daughter" for Mia,
"Portugal's capital" for Lisbon, "home loan" for mortgage), others share words with notes
that do not answer them. Synthetic distractor notes (bench/ingest.py) are mixed in, some on
the same subjects. Compared: hybrid (vectors + BM25, reciprocal-rank fusion, as the PSP's
Context layer uses), full-text only, vectors only (chromadb's approximate search, as the app
runs it), and vectors only with an exact search (the model's own quality, without the noise of
the approximate index). `--runtime`/`--precision` pick the local
embedding model's runtime (numpy: what the installers ship; onnxruntime int8: the default where
onnxruntime is installed; onnxruntime fp32: sentence-transformers' exact numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import numpy as np
import orjson

from bench._util import temp_home
from bench.ingest import ingest, make_records

DATA = Path(__file__).resolve().parent / "data"
K = 5


def stored_vectors(vectors) -> tuple[list[int], np.ndarray]:
    """Every record's stored vector, for an exact search: chromadb's HNSW search is approximate,
    and its recall on this set moves by up to ±0.04 between runs with the very same vectors."""
    from app.kernel.personal.vectors import SHARED

    keys: list[int] = []
    rows = []
    for name, col in vectors._collections.items():
        if name == SHARED:  # shared records are also in their source's collection
            continue
        got = col.get(include=["embeddings"])
        keys += [int(i.split("#")[0]) for i in got["ids"]]  # a long record: one row per passage
        rows += list(got["embeddings"])
    return keys, np.asarray(rows, dtype=np.float32)


def load(name: str) -> list[dict]:
    return [orjson.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--distractors", type=int, default=2000)
    ap.add_argument("--precision", choices=("int8", "fp32"), default=None)
    ap.add_argument("--runtime", choices=("numpy", "onnxruntime"), default=None)
    args = ap.parse_args()
    os.environ.update(BYENATOS_HOME=str(temp_home()), BYENATOS_SECRETS="file")
    if args.precision:
        os.environ["BYENATOS_EMBED_PRECISION"] = args.precision
    if args.runtime:
        os.environ["BYENATOS_EMBED_RUNTIME"] = args.runtime
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
        results: dict[str, list[float]] = {"hybrid": [], "fts": [], "vector": [], "exact": []}
        mrr: dict[str, list[float]] = {m: [] for m in results}
        keys, matrix = stored_vectors(vectors)
        for q in questions:
            qvec = model.encode([q["question"]])[0]
            evidence = {key_of[e] for e in q["evidence"]}
            for mode in results:
                if mode == "exact":
                    hits = [keys[i] for i in np.argsort(-(matrix @ qvec))[:K]]
                else:
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
            ("exact", "vectors only, exact search"),
        ):
            print(f"  {label:<30} recall@{K} {sum(results[mode]) / n:.3f}   MRR@{K} {sum(mrr[mode]) / n:.3f}")
    finally:
        await kernel.stop()


if __name__ == "__main__":
    asyncio.run(main())
