"""The document index: index speed (pages and files per second), peak memory while indexing,
a rescan of an unchanged folder, and search latency at 10k documents.

    .venv/bin/python -m bench.documents_index [--docs 10000] [--queries 200] [--no-vectors]

The corpus is generated here, in a temporary folder: real PDFs (written by hand, 1-4 pages of
text each, read back with pypdf), .docx files (python-docx), Markdown and Python sources. Each
document holds one made-up fact ("the <adjective> <thing> of <name> is kept in <place>") that
no other document holds; a query asks for it in other words, so hit@5 says whether search
found the right file. "Indexed" means the passages are durable in the encrypted personal
store; vectors follow in the background (all-MiniLM-L6-v2), so search is timed twice: full-text
only (right after the index) and hybrid (once the vectors caught up, unless --no-vectors).
Peak memory is the process's resident set, sampled every 20 ms while indexing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import threading
import time
from pathlib import Path

from bench._util import percentile, temp_home

ADJ = ["blue", "old", "spare", "broken", "silver", "tiny", "heavy", "wooden", "rusty", "golden"]
THINGS = ["key", "ladder", "umbrella", "passport", "violin", "helmet", "lantern", "compass", "kettle", "drill"]
PLACES = ["the attic", "the garage", "a red box", "the cellar", "the top drawer", "the shed", "the van",
          "the office safe", "the blue cupboard", "the balcony chest"]
FILLER = ("The meeting notes mention budgets, schedules and the usual follow-ups. Several people asked "
          "for the slides again and the room booking moved twice. ").split()


def _name(i: int) -> str:
    syll = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "dun", "e", "or", "pa", "zu"]
    r = random.Random(i)
    return "".join(r.choice(syll) for _ in range(3)).capitalize() + f"{i}"


def _filler(r: random.Random, words: int) -> str:
    return " ".join(r.choice(FILLER) for _ in range(words))


def make_corpus(root: Path, n: int) -> tuple[int, list[tuple[str, str]]]:
    """n documents under root (in folders of 500); (pages in PDFs, [(query, the file that answers)])."""
    from tests.kernel.documents.files import write_docx, write_pdf

    r = random.Random(23)
    pages = 0
    answers: list[tuple[str, str]] = []
    for i in range(n):
        folder = root / f"box-{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = _name(i)
        adj, thing, place = ADJ[i % 10], THINGS[(i // 10) % 10], PLACES[(i // 100) % 10]
        fact = f"The {adj} {thing} of {name} is kept in {place}."
        kind = i % 10
        if kind < 6:
            count = 1 + i % 4
            body = [_filler(r, 120) for _ in range(count)]
            at = i % count
            body[at] = f"{_filler(r, 40)} {fact} {_filler(r, 40)}"
            path = write_pdf(folder / f"doc-{i}.pdf", [_wrap(p) for p in body])
            pages += count
        elif kind < 8:
            path = write_docx(folder / f"doc-{i}.docx", [_filler(r, 60), fact, _filler(r, 60)], heading=f"File {i}")
        elif kind == 8:
            path = folder / f"doc-{i}.md"
            path.write_text(f"# Note {i}\n\n{_filler(r, 80)}\n\n## Where\n\n{fact}\n")
        else:
            path = folder / f"doc_{i}.py"
            path.write_text(f'"""Inventory {i}."""\n\n\ndef where():\n    # {fact}\n    return {place!r}\n')
        answers.append((f"where is {name}'s {adj} {thing} kept", str(path)))
    return pages, answers


def _wrap(text: str, width: int = 90) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join([*lines, line])


class PeakRss:
    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def time_search(docs, answers: list[tuple[str, str]], queries: int) -> tuple[list[float], float]:
    r = random.Random(7)
    picked = r.sample(answers, min(queries, len(answers)))
    times, hits = [], 0
    for q, want in picked:
        t = time.perf_counter()
        found = await docs.search(q, 5)
        times.append((time.perf_counter() - t) * 1000)
        hits += any(h["file"] == want for h in found)
    return times, hits / len(picked)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-vectors", action="store_true", help="skip the hybrid search timing")
    args = ap.parse_args()

    home = temp_home()
    os.environ["BYENATOS_HOME"] = str(home)
    os.environ["BYENATOS_SECRETS"] = "file"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    corpus = home / "corpus"
    t = time.perf_counter()
    pdf_pages, answers = make_corpus(corpus, args.docs)
    print(f"corpus: {args.docs:,} documents ({pdf_pages:,} PDF pages) written in {time.perf_counter() - t:.1f} s")

    from app.kernel.kernel import Kernel

    kernel = await Kernel().start()
    try:
        await kernel.personal.ready()
        docs = kernel.documents
        with PeakRss() as rss:
            t = time.perf_counter()
            out = await docs.add_folder(corpus, wait=True)
            took = time.perf_counter() - t
        rep = out["report"]
        print(f"first index: {rep['indexed']:,} files, {rep['pages']:,} pages, {rep['chunks']:,} passages, "
              f"{rep['skipped']} skipped in {took:.1f} s: {rep['pages'] / took:,.0f} pages/s, "
              f"{rep['indexed'] / took:,.0f} files/s")
        print(f"memory while indexing: peak RSS {rss.peak / 2**20:,.0f} MB "
              f"(+{(rss.peak - rss.start) / 2**20:,.0f} MB over the {rss.start / 2**20:,.0f} MB before)")
        t = time.perf_counter()
        (again,) = await docs.scan(corpus)
        print(f"rescan, nothing changed: {again['unchanged']:,} files in {time.perf_counter() - t:.2f} s")

        times, hit = await time_search(docs, answers, args.queries)
        print(f"search, full text ({len(times)} queries, k=5): p50 {percentile(times, 50):.1f} ms, "
              f"p95 {percentile(times, 95):.1f} ms; hit@5 {hit:.0%}")
        if not args.no_vectors:
            personal = kernel.personal
            personal.want_vectors()
            t = time.perf_counter()
            await personal.wait_vectors(3600)
            if personal.vector_error:
                print(f"hybrid search not timed: {personal.vector_error}")
            else:
                print(f"vectors caught up in {time.perf_counter() - t:.0f} s")
                times, hit = await time_search(docs, answers, args.queries)
                print(f"search, hybrid ({len(times)} queries, k=5): p50 {percentile(times, 50):.1f} ms, "
                      f"p95 {percentile(times, 95):.1f} ms; hit@5 {hit:.0%}")
    finally:
        await kernel.stop()


if __name__ == "__main__":
    asyncio.run(main())
