"""Hybrid retrieval: nearest vectors and BM25 full-text matches, fused by reciprocal rank.

Rank fusion decides the *order* (robust to the two scores' different scales); the
*relevance* reported for each record (the PSP's 0.35 weight) is the stronger of its two
calibrated signals, so a record that is merely the 30th-nearest vector scores near zero
instead of inheriting a rank-based half credit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.kernel.personal.store import PersonalStore, Visibility
    from app.kernel.personal.vectors import VectorIndex

Mode = Literal["hybrid", "fts", "vector"]
RRF_K = 60
# MiniLM cosine: unrelated sentences sit around 0-0.15, paraphrases above ~0.6.
COS_FLOOR, COS_FULL = 0.15, 0.65


def vector_relevance(cos: float) -> float:
    return max(0.0, min(1.0, (cos - COS_FLOOR) / (COS_FULL - COS_FLOOR)))


def search(
    store: PersonalStore,
    vectors: VectorIndex | None,
    qvec: Any,
    query: str,
    vis: Visibility,
    k: int,
    mode: Mode = "hybrid",
    *,
    fts_hits: list[tuple[int, float]] | None = None,
) -> list[tuple[int, float]]:
    """(record key, relevance 0-1), best first, at most `k`. `fts_hits`: the full-text ranking
    if the caller already ran it (the PSP builder runs it alongside the query embedding)."""
    rankings: list[list[tuple[int, float]]] = []
    rel: dict[int, float] = {}
    if mode in ("hybrid", "fts") and query:
        fts = fts_hits if fts_hits is not None else store.fts_ranked(query, vis, k)
        if fts:
            top = max(s for _, s in fts) or 1.0
            for key, s in fts:
                rel[key] = max(rel.get(key, 0.0), s / top)
            rankings.append(fts)
    if mode in ("hybrid", "vector") and qvec is not None and vectors is not None and vectors.is_open:
        near = vectors.query(qvec, vis, k)
        for key, cos in near:
            rel[key] = max(rel.get(key, 0.0), vector_relevance(cos))
        rankings.append(near)
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (key, _s) in enumerate(ranking):
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank + 1)
    order = sorted(fused, key=lambda key: (-fused[key], -rel[key]))[:k]
    return [(key, round(rel[key], 4)) for key in order]
