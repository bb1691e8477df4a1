"""Hybrid retrieval: nearest vectors and BM25 full-text matches, fused by reciprocal rank.

One function serves the PSP's Context layer, agents' memory recall and the search API, so a
question finds the same records everywhere. Stages:

1. candidates: BM25 over any word of the query (phrases required), and the nearest vectors
   (a long record has one vector per passage; its best passage counts), both within the
   caller's visibility and the search's filters;
2. time: a time the query names ("last week", "昨天": `timeq`) promotes the records of that
   period — their own ranking joins the fusion and their relevance is raised;
3. fusion: reciprocal rank decides the *order* (robust to the two scores' different scales);
   the *relevance* reported for each record (the PSP's 0.35 weight) is the stronger of its
   calibrated signals, so a record that is merely the 30th-nearest vector scores near zero
   instead of inheriting a rank-based half credit;
4. reranking (optional): a reranker re-orders the best few by reading query and record
   together (`rerank.py`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from app.kernel.personal.store import Filters

if TYPE_CHECKING:
    from app.kernel.personal.store import PersonalStore, Visibility
    from app.kernel.personal.textindex import Query
    from app.kernel.personal.timeq import TimeRange
    from app.kernel.personal.vectors import VectorIndex

Mode = Literal["hybrid", "fts", "vector"]
RRF_K = 60
# MiniLM cosine: unrelated sentences sit around 0-0.15, paraphrases above ~0.6.
COS_FLOOR, COS_FULL = 0.15, 0.65
EXACT_CAP = 2000  # a filtered set this small gets every vector scored exactly, not just the nearest
TIME_BOOST = 0.3
RERANK_TOP = 20


class Reranker(Protocol):
    def score(self, query: str, texts: list[str]) -> list[float]:
        """Relevance 0-1 of each text to the query."""
        ...


def vector_relevance(cos: float, floor: float = COS_FLOOR, full: float = COS_FULL) -> float:
    return max(0.0, min(1.0, (cos - floor) / (full - floor)))


def search(
    store: PersonalStore,
    vectors: VectorIndex | None,
    qvec: Any,
    query: str | Query,
    vis: Visibility,
    k: int,
    mode: Mode = "hybrid",
    *,
    fts_hits: list[tuple[int, float]] | None = None,
    filters: Filters | None = None,
    time_range: TimeRange | None = None,
    reranker: Reranker | None = None,
    rerank_text: Any = None,
    calibration: tuple[float, float] = (COS_FLOOR, COS_FULL),
) -> list[tuple[int, float]]:
    """(record key, relevance 0-1), best first, at most `k`. `fts_hits`: the full-text ranking
    if the caller already ran it (the PSP builder runs it alongside the query embedding).
    `query` is the text for full text (without the words that named `time_range`).
    `rerank_text(keys) -> {key: text}` feeds the reranker; `calibration` is the embedding
    model's (floor, full) cosine."""
    filters = filters if filters is not None and filters.any else None
    rankings: list[list[tuple[int, float]]] = []
    rel: dict[int, float] = {}
    has_text = bool(query.words or query.phrases) if not isinstance(query, str) else bool(query)
    if mode in ("hybrid", "fts") and has_text:
        fts = fts_hits if fts_hits is not None else store.fts_ranked(query, vis, k, filters)
        _add_fts(fts, rel, rankings)
    use_vectors = (
        mode in ("hybrid", "vector") and qvec is not None and vectors is not None and vectors.is_open
    )
    if use_vectors:
        assert vectors is not None
        near = _nearest(store, vectors, qvec, vis, k, filters)
        for key, cos in near:
            rel[key] = max(rel.get(key, 0.0), vector_relevance(cos, *calibration))
        rankings.append(near)
    if time_range is not None:
        period = replace(filters or Filters(), since=time_range.since, until=time_range.until)
        in_range: list[tuple[int, float]] = []
        if has_text and mode in ("hybrid", "fts"):
            in_range = store.fts_ranked(query, vis, k, period)
        if use_vectors:
            assert vectors is not None
            in_range = _fuse([in_range, _nearest(store, vectors, qvec, vis, k, period)], k)
        if not in_range:  # "what did I do yesterday": no content words, the period is the question
            keys, _ = store.filtered_keys(vis, period, k)
            in_range = [(key, 1.0) for key, _src in keys]
        for key, _s in in_range:
            rel[key] = min(1.0, rel.get(key, 0.0) + TIME_BOOST)
        rankings.append(in_range)
    order = _fuse(rankings, k, rel)
    hits = [(key, round(rel[key], 4)) for key, _ in order]
    if reranker is not None and rerank_text is not None and len(hits) > 1:
        hits = _rerank(reranker, query, hits, rerank_text)
    return hits


def _add_fts(
    fts: list[tuple[int, float]], rel: dict[int, float], rankings: list[list[tuple[int, float]]]
) -> None:
    if fts:
        top = max(s for _, s in fts) or 1.0
        for key, s in fts:
            rel[key] = max(rel.get(key, 0.0), s / top)
        rankings.append(fts)


def _fuse(
    rankings: list[list[tuple[int, float]]], k: int, rel: dict[int, float] | None = None
) -> list[tuple[int, float]]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (key, _s) in enumerate(ranking):
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank + 1)
    tie = rel or {}
    keys = sorted(fused, key=lambda key: (-fused[key], -tie.get(key, 0.0)))[:k]
    return [(key, fused[key]) for key in keys]


def _nearest(
    store: PersonalStore, vectors: VectorIndex, qvec: Any, vis: Visibility, k: int, filters: Filters | None
) -> list[tuple[int, float]]:
    """Nearest visible vectors within `filters`: the approximate index's nearest, filtered; and
    for a filtered set of at most EXACT_CAP records, each of its records scored exactly too
    (the nearest of the whole store may all fall outside a narrow filter)."""
    if filters is None:
        return vectors.query(qvec, vis, k)
    near = vectors.query(qvec, vis, max(4 * k, 100))
    allowed = store.allowed(vis, filters, [key for key, _ in near])
    best = {key: cos for key, cos in near if key in allowed}
    keys, total = store.filtered_keys(vis, filters, EXACT_CAP)
    if total <= EXACT_CAP:
        missing = [key for key, _ in keys if key not in best]
        if missing:
            import numpy as np

            got = vectors.vectors_of(missing, dict(keys))
            if got:
                ids = list(got)
                sims = np.stack([got[i] for i in ids]) @ np.asarray(qvec, dtype=np.float32)
                best.update({key: float(c) for key, c in zip(ids, sims, strict=True)})
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


def _rerank(
    reranker: Reranker, query: str | Query, hits: list[tuple[int, float]], rerank_text: Any
) -> list[tuple[int, float]]:
    """Re-order the best RERANK_TOP by the reranker's reading; the rest keep their place."""
    head, tail = hits[:RERANK_TOP], hits[RERANK_TOP:]
    texts = rerank_text([key for key, _ in head])
    qtext = query if isinstance(query, str) else " ".join([*query.phrases, *query.words])
    keys = [key for key, _ in head if key in texts]
    scores = reranker.score(qtext, [texts[key] for key in keys])
    by_key = dict(zip(keys, scores, strict=True))
    first = {key: rel for key, rel in head}
    # The reranker orders; relevance blends it with the retrieval's (a reranker's score alone
    # is sharp but not calibrated to the PSP's other three signals).
    ordered = sorted(keys, key=lambda key: -by_key[key])
    out = [(key, round(0.5 * first[key] + 0.5 * by_key[key], 4)) for key in ordered]
    out += [(key, rel) for key, rel in head if key not in by_key]
    return out + tail
