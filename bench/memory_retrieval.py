"""Memory retrieval quality: recall@5 and hit@5 of the evidence, per retriever, on three sets.

    .venv/bin/python -m bench.memory_retrieval [--sets en,zh,locomo] [--model-dir DIR]
                                               [--locomo-cache DIR] [--locomo-git DIR]

Sets:
- en: bench/data/memory_records.jsonl + memory_questions.jsonl (60 notes, 36 questions);
- zh: bench/data/memory_zh_*.jsonl, the same notes and questions written in Chinese (same
  shape, same evidence), so the two recalls compare like for like;
- locomo: LoCoMo (Maharana et al., ACL 2024: 10 very long conversations, ~5,900 turns, QA
  with the ids of the turns that hold the evidence). Each turn is one record (speaker: text,
  timestamped with its session's date), each conversation its own app (a question sees only
  its conversation's turns); questions of categories 1-4 (single-hop, multi-hop, temporal,
  open-domain; category 5 is adversarial: questions that have no answer).

The data is not in this repository: it is read from a cache folder (default
~/.cache/byenatos/bench/locomo), filled on first use from the public repository
snap-research/locomo (its data/locomo10.zip) — from a git checkout given by --locomo-git
(this machine reaches GitHub only through such a mirror) or, where the machine has the
network, by cloning it.

Retrievers: bm25 (full text, any word), vector (the embedding model's nearest, best
passage), hybrid (the two fused by reciprocal rank: what the PSP, recall and search use),
hybrid+rerank (the same with the reranking stage, where a reranker is installed).
recall@5: the share of a question's evidence records in the top 5, averaged over questions;
hit@5: the share of questions with at least one evidence record in the top 5.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
import zipfile
from datetime import datetime
from pathlib import Path

import orjson

from bench._util import temp_home

DATA = Path(__file__).resolve().parent / "data"
K = 5
MIRROR = Path("/work/.mirror/snap-research+locomo/repo")
LOCOMO_REPO = "https://github.com/snap-research/locomo"


def _jsonl(name: str) -> list[dict]:
    return [
        orjson.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def own_set(lang: str) -> tuple[dict[str, list[dict]], list[tuple[str, str, list[str]]]]:
    prefix = "memory_" if lang == "en" else "memory_zh_"
    records = _jsonl(f"{prefix}records.jsonl")
    questions = [(("user"), q["question"], q["evidence"]) for q in _jsonl(f"{prefix}questions.jsonl")]
    return {"user": records}, questions


def locomo_files(cache: Path, git_dir: Path | None) -> list[Path]:
    """The LoCoMo conversation files, fetched into `cache` on first use."""
    folder = cache / "locomo10"
    if not folder.is_dir() or not any(folder.rglob("*.json")):
        cache.mkdir(parents=True, exist_ok=True)
        zpath = cache / "locomo10.zip"
        src = git_dir or (MIRROR if MIRROR.is_dir() else None)
        if src is None:
            clone = cache / "repo"
            if not clone.exists():
                subprocess.run(["git", "clone", "--depth", "1", LOCOMO_REPO, str(clone)], check=True)
            zpath.write_bytes((clone / "data" / "locomo10.zip").read_bytes())
        else:
            blob = subprocess.run(
                [
                    "git",
                    "--git-dir",
                    str(src if src.name.endswith("repo") else src / ".git"),
                    "show",
                    "HEAD:data/locomo10.zip",
                ],
                check=True,
                capture_output=True,
            ).stdout
            zpath.write_bytes(blob)
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(folder)
    return sorted(folder.rglob("*.json"))


def _session_time(text: str) -> str:
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").isoformat() + "Z"


def locomo_set(files: list[Path]) -> tuple[dict[str, list[dict]], list[tuple[str, str, list[str]]]]:
    by_app: dict[str, list[dict]] = {}
    questions: list[tuple[str, str, list[str]]] = []
    for n, f in enumerate(files):
        conv = json.loads(f.read_text(encoding="utf-8"))
        app = f"locomo-{n}"
        recs = by_app.setdefault(app, [])
        s = 1
        while f"session_{s}" in conv:
            when = _session_time(conv[f"session_{s}_date_time"])
            for turn in conv[f"session_{s}"]:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                recs.append({"id": f"{app}-{turn['dia_id']}", "timestamp": when, "highlight": text[:10_000]})
            s += 1
        for qa in conv.get("qa", []):
            if qa.get("category") == 5 or not qa.get("evidence"):
                continue
            ev = [
                e.strip()
                for item in qa["evidence"]
                for e in str(item).replace(";", ",").split(",")
                if e.strip()
            ]
            questions.append((app, qa["question"], [f"{app}-{e}" for e in ev]))
    return by_app, questions


async def run_set(
    name: str, by_app: dict[str, list[dict]], questions: list[tuple[str, str, list[str]]]
) -> None:
    from app.kernel.kernel import Kernel
    from app.kernel.personal import retrieval
    from app.kernel.personal.service import Caller

    os.environ.update(BYENATOS_HOME=str(temp_home()), BYENATOS_SECRETS="file")
    kernel = await Kernel().start()
    try:
        personal = kernel.personal
        await personal.ready()
        started = time.perf_counter()
        for app, recs in by_app.items():
            caller = Caller.user() if app == "user" else Caller(app, frozenset({"hinata:write"}))
            for i in range(0, len(recs), 100):
                await personal.add(recs[i : i + 100], caller)
        personal.want_vectors()
        await personal.wait_vectors(7200)
        ingest_s = time.perf_counter() - started
        store, vectors, model = personal.store, personal.vectors, personal.embedder.model()
        reranker = personal.reranker()
        modes = ["bm25", "vector", "hybrid", *(["hybrid+rerank"] if reranker is not None else [])]
        recall: dict[str, list[float]] = {m: [] for m in modes}
        hit: dict[str, list[float]] = {m: [] for m in modes}
        key_cache: dict[str, int | None] = {}
        lat: list[float] = []
        cal = personal.embedder.calibration()
        for app, question, evidence in questions:
            caller = Caller.user() if app == "user" else Caller(app, frozenset({"hinata:write"}))
            vis = caller.visibility()
            keys = set()
            for e in evidence:
                if e not in key_cache:
                    rec = store.get(e)
                    key_cache[e] = rec["key"] if rec else None
                if key_cache[e] is not None:
                    keys.add(key_cache[e])
            if not keys:
                continue
            qvec = model.encode([question])[0]
            for mode in modes:
                t = time.perf_counter()
                hits = retrieval.search(
                    store,
                    vectors,
                    qvec,
                    question,
                    vis,
                    K,
                    {"bm25": "fts", "vector": "vector"}.get(mode, "hybrid"),  # type: ignore[arg-type]
                    reranker=reranker if mode == "hybrid+rerank" else None,
                    rerank_text=lambda ks: {
                        k: r["highlight"] + ("\n" + r["note"] if r["note"] else "")
                        for k, r in store.by_keys(ks).items()
                    },
                    calibration=cal,
                )
                if mode == "hybrid":
                    lat.append((time.perf_counter() - t) * 1000)
                top = {k for k, _ in hits[:K]}
                recall[mode].append(len(keys & top) / len(keys))
                hit[mode].append(1.0 if keys & top else 0.0)
        n = len(recall["bm25"])
        records = sum(len(r) for r in by_app.values())
        lat.sort()
        print(
            f"{name}: {n} questions over {records:,} records, model {model.name}; ingest+embed {ingest_s:.0f} s, "
            f"hybrid retrieval p50 {lat[len(lat) // 2]:.1f} ms"
        )
        base = sum(recall["bm25"]) / n
        for mode in modes:
            r, h = sum(recall[mode]) / n, sum(hit[mode]) / n
            print(f"  {mode:<14} recall@{K} {r:.3f}  hit@{K} {h:.3f}  ({r / base:.2f}x bm25)")
        if reranker is None:
            print("  hybrid+rerank  n/a: no reranker installed")
    finally:
        await kernel.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="en,zh,locomo")
    ap.add_argument("--model-dir", type=Path, help="the embedding model's folder (default: set-up's)")
    ap.add_argument(
        "--locomo-cache", type=Path, default=Path.home() / ".cache" / "byenatos" / "bench" / "locomo"
    )
    ap.add_argument("--locomo-git", type=Path, help="a git checkout (or bare repo) of snap-research/locomo")
    ap.add_argument("--locomo-limit", type=int, default=0, help="only the first N conversations")
    args = ap.parse_args()
    if args.model_dir:
        os.environ["BYENATOS_EMBED_MODEL_DIR"] = str(args.model_dir)
    for name in args.sets.split(","):
        if name in ("en", "zh"):
            by_app, questions = own_set(name)
        elif name == "locomo":
            files = locomo_files(args.locomo_cache, args.locomo_git)
            by_app, questions = locomo_set(files[: args.locomo_limit or None])
        else:
            raise SystemExit(f"unknown set {name!r}: en, zh or locomo")
        await run_set(name, by_app, questions)


if __name__ == "__main__":
    asyncio.run(main())
