"""The local embedding model's runtimes side by side: numpy vs onnxruntime int8 vs onnxruntime fp32.

    .venv/bin/python -m bench.embed_runtime [--queries 300] [--sentences 1000]

Each runtime runs in a process of its own (one BLAS / onnxruntime thread, as the app runs
them), one after the other, and reports:
- single query: the median latency of `encode([question])` over the 36 questions of
  bench/data, cycled (tokenizing included), once with warm caches (back-to-back queries) and
  once with cold ones (64 MB streamed through the caches before each query, as when a query
  arrives after other work);
- catch-up: sentences per second over ~1000 sentences (bench/data's notes and questions, then
  bench/ingest.py's synthetic notes), embedded in chunks of the personal store's vector batch;
- load time, the resident memory the loaded model adds, and the cosine of its vectors to
  onnxruntime fp32's (sentence-transformers' numbers) on those sentences.

At the end: the numpy/onnxruntime-int8 ratios and the decision rule the numpy runtime was
held to (single-query median ≤ 1.5x onnxruntime int8's, throughput ≥ 0.6x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench._util import ROOT

DATA = Path(__file__).resolve().parent / "data"
RUNTIMES = {
    "numpy": ("numpy", None),
    "ort-int8": ("onnxruntime", "int8"),
    "ort-fp32": ("onnxruntime", "fp32"),
}


def sentences(n: int) -> list[str]:
    from bench.ingest import make_records

    out = []
    for line in (DATA / "memory_records.jsonl").read_text().splitlines():
        r = orjson.loads(line)
        out.append(" ".join(filter(None, (r.get("highlight"), r.get("note")))))
    out += questions()
    for r in make_records(max(0, n - len(out)), seed=11):
        out.append(" ".join(filter(None, (r["highlight"], r["note"]))))
    return out[:n]


def questions() -> list[str]:
    return [
        orjson.loads(line)["question"] for line in (DATA / "memory_questions.jsonl").read_text().splitlines()
    ]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def measure(which: str, n_queries: int, n_sentences: int, out_dir: Path) -> dict:
    """One runtime, in this process."""
    import numpy as np

    from app.kernel.personal.embed import EmbeddingModel
    from app.kernel.personal.service import VECTOR_BATCH

    runtime, precision = RUNTIMES[which]
    before = rss_mb()
    started = time.perf_counter()
    model = EmbeddingModel.load(runtime=runtime, precision=precision)
    model.encode(["warm up the tokenizer and the first allocations"])
    load_s = time.perf_counter() - started
    qs = questions()
    for q in qs:
        model.encode([q])
    warm = []
    for i in range(n_queries):
        t = time.perf_counter()
        model.encode([qs[i % len(qs)]])
        warm.append(time.perf_counter() - t)
    flush = np.ones(16_000_000, dtype=np.float32)  # 64 MB, twice the L3 here
    cold = []
    for i in range(min(n_queries, 100)):
        flush += 1.0
        t = time.perf_counter()
        model.encode([qs[i % len(qs)]])
        cold.append(time.perf_counter() - t)
    del flush
    texts = sentences(n_sentences)
    started = time.perf_counter()
    vecs = [model.encode(texts[i : i + VECTOR_BATCH]) for i in range(0, len(texts), VECTOR_BATCH)]
    took = time.perf_counter() - started
    out = np.concatenate(vecs)
    np.save(out_dir / f"{which}.npy", out)  # for the cosines to fp32, in the parent
    return {
        "name": model.name,
        "load_s": load_s,
        "rss_mb": rss_mb() - before,
        "warm_ms": statistics.median(warm) * 1e3,
        "cold_ms": statistics.median(cold) * 1e3,
        "per_s": len(texts) / took,
        "sentences": len(texts),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--one", choices=list(RUNTIMES), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.queries, args.sentences, args.out)), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="byenatos-embed-bench-") as tmp:
        compare(args, Path(tmp))


def compare(args: argparse.Namespace, out_dir: Path) -> None:
    import numpy as np

    env = {**os.environ, "PYTHONPATH": str(ROOT), "BYENATOS_EMBED_THREADS": "1"}
    results = {}
    for which in RUNTIMES:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.embed_runtime",
                "--one",
                which,
                "--queries",
                str(args.queries),
                "--sentences",
                str(args.sentences),
                "--out",
                str(out_dir),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{which}: failed\n{proc.stderr[-2000:]}")
            continue
        results[which] = json.loads(line[len("RESULT ") :])
    exact = np.load(out_dir / "ort-fp32.npy") if "ort-fp32" in results else None
    print(
        f"{args.queries} single queries (36 questions cycled), {args.sentences} sentences for the catch-up; "
        "one thread each"
    )
    print(
        f"{'runtime':<10} {'model name':<30} {'query warm':>11} {'query cold':>11} {'catch-up':>12} "
        f"{'load':>7} {'+RSS':>7} {'cosine to fp32 (min / median)':>30}"
    )
    for which, r in results.items():
        cos = ""
        if exact is not None:
            c = (np.load(out_dir / f"{which}.npy") * exact).sum(axis=1)
            cos = f"{c.min():.5f} / {np.median(c):.5f}"
        print(
            f"{which:<10} {r['name']:<30} {r['warm_ms']:>8.2f} ms {r['cold_ms']:>8.2f} ms "
            f"{r['per_s']:>8.0f} /s {r['load_s']:>6.2f}s {r['rss_mb']:>5.0f}MB {cos:>30}"
        )
    if "numpy" in results and "ort-int8" in results:
        n, q = results["numpy"], results["ort-int8"]
        latency, throughput = n["warm_ms"] / q["warm_ms"], n["per_s"] / q["per_s"]
        print(
            f"numpy / ort-int8: single query {latency:.2f}x (cold caches {n['cold_ms'] / q['cold_ms']:.2f}x), "
            f"throughput {throughput:.2f}x"
        )
        verdict = "met" if latency <= 1.5 and throughput >= 0.6 else "missed"
        print(f"decision rule (query <= 1.5x, throughput >= 0.6x ort-int8): {verdict}")


if __name__ == "__main__":
    main()
