"""The Personal System Prompt builder.

Per request, within a token budget, four layers: Core (~20%: the user's rules and stable
preferences), Working (~40%: current projects and interests), Context (~30%: records relevant
to this request), Buffer (~10%: the latest records). Every item is scored

    0.30·importance + 0.35·relevance + 0.20·freshness + 0.15·access frequency

and the explanation (each item's four numbers) comes back with the prompt, so the user can
see exactly what was injected and why. A layer's unused share carries over to the next.

Query-time work is one embedding of the request text, the vector query, one FTS query and
the ranking; the standing candidates (Core, Working, Buffer) and their vectors are cached per
caller and rebuilt only when the store's generation moves.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.kernel.personal import retrieval, timeq

if TYPE_CHECKING:
    import numpy as np

    from app.kernel.personal.embed import LazyEmbedder
    from app.kernel.personal.store import PersonalStore, Visibility
    from app.kernel.personal.vectors import VectorIndex

WEIGHTS = {"importance": 0.30, "relevance": 0.35, "freshness": 0.20, "frequency": 0.15}
LAYERS = (("core", 0.20), ("working", 0.40), ("context", 0.30), ("buffer", 0.10))
FILL_ORDER = ("core", "context", "working", "buffer")  # a record shows once, in the first layer that takes it
TITLES = {"core": "Core", "working": "Working", "context": "Context", "buffer": "Buffer"}
FRESH_DAYS = 30.0  # freshness halves about every three weeks
WORKING_DAYS = 90.0
STANDING_POOL = 200
VECTOR_CACHE = 5000  # ~7.5 MB of float32 vectors
BUFFER_POOL = 20
CONTEXT_K = 30
MIN_CONTEXT_RELEVANCE = 0.25  # below this a "relevant" record is noise, not context
HEADER = "About the user, from their own notes. Use it where it helps; the app's instructions come first."
MAX_HIGHLIGHT_CHARS = 300
MAX_NOTE_CHARS = 240


def item_line(rec: dict[str, Any]) -> str:
    """One record as one Markdown bullet (its token count is stored at ingest)."""
    hl = " ".join(rec["highlight"].split())
    note = " ".join((rec.get("note") or "").split())
    text = _clip(hl, MAX_HIGHLIGHT_CHARS) if hl else ""
    if note:
        text = f"{text} — {_clip(note, MAX_NOTE_CHARS)}" if text else _clip(note, MAX_NOTE_CHARS)
    tags = rec.get("tags") or []
    if tags:
        text += " (" + " ".join("#" + t.replace(" ", "-") for t in tags[:5]) + ")"
    day = str(rec.get("timestamp", ""))[:10]
    return f"- {text} [{day}]" if day else f"- {text}"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


@dataclass
class PspItem:
    layer: str
    kind: str  # "rule" | "record"
    id: str
    line: str
    tokens: int
    scores: dict[str, float]
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "kind": self.kind,
            "id": self.id,
            "text": self.line,
            "tokens": self.tokens,
            "source": self.source,
            "scores": self.scores,
        }


@dataclass
class Psp:
    version: str | None
    text: str
    items: list[PspItem]
    budget: int
    tokens: int
    layer_budgets: dict[str, int]
    took_ms: float = 0.0
    retrieval: str = "hybrid"  # or "fts-only" when vectors are unavailable

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "text": self.text,
            "budget": self.budget,
            "tokens": self.tokens,
            "layers": self.layer_budgets,
            "retrieval": self.retrieval,
            "took_ms": round(self.took_ms, 2),
            "items": [i.to_dict() for i in self.items],
        }


@dataclass
class _Pool:
    generation: int
    built_at: float
    core: list[dict[str, Any]]
    standing: list[dict[str, Any]]
    recent: list[dict[str, Any]]
    max_uses: int = 1
    # Per record: (importance, freshness, frequency), fixed for the pool's life (an hour at
    # most: freshness moves ~0.1% an hour), so a build only adds relevance.
    static: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)  # rows of `matrix`
    matrix: Any = None  # the pool's record vectors, one row each, for one matmul per query


class PspBuilder:
    def __init__(
        self, store: PersonalStore, embedder: LazyEmbedder, vectors: VectorIndex | None = None
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.vectors = vectors
        self._pools: OrderedDict[tuple[Any, ...], _Pool] = OrderedDict()
        self._query_cache: OrderedDict[str, Any] = OrderedDict()
        self._token_cache: dict[str, int] = {}
        # Record vectors the pools used, kept across rebuilds (a write rebuilds the pools but
        # changes few vectors); the vector worker tells us which ones it changed.
        self._vec_cache: dict[int, Any] = {}
        self._helper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="psp-fts")

    # -- inputs -------------------------------------------------------------------------------
    def _vectors_ready(self) -> bool:
        return self.vectors is not None and self.vectors.is_open and self.embedder.available

    def _pool(self, vis: Visibility, now: float) -> _Pool:
        gen = self.store.generation
        pool = self._pools.get(vis.cache_key)
        if pool is not None and pool.generation == gen and now - pool.built_at < 3600:
            self._pools.move_to_end(vis.cache_key)
            return pool
        core = self.store.candidates(vis, since=None, order="core", limit=STANDING_POOL)
        standing = self.store.candidates(
            vis, since=now - WORKING_DAYS * 86400, order="standing", limit=STANDING_POOL
        )
        recent = self.store.candidates(vis, since=None, order="recent", limit=BUFFER_POOL)
        pool = _Pool(gen, now, core, standing, recent)
        everything = {r["key"]: r for r in (*core, *standing, *recent)}
        pool.max_uses = max([1, *(r["uses"] for r in everything.values())])
        pool.static = {k: _static(r, now, pool.max_uses) for k, r in everything.items()}
        if self._vectors_ready():
            import numpy as np

            assert self.vectors is not None
            missing = [k for k in everything if k not in self._vec_cache]
            if missing:
                got = self.vectors.vectors_of(missing, {k: everything[k]["source"] for k in missing})
                if len(self._vec_cache) + len(got) > VECTOR_CACHE:
                    self._vec_cache.clear()
                self._vec_cache.update(got)
            vecs = {k: self._vec_cache[k] for k in everything if k in self._vec_cache}
            if vecs:
                pool.keys = list(vecs)
                pool.matrix = np.stack([vecs[k] for k in pool.keys])
        self._pools[vis.cache_key] = pool
        while len(self._pools) > 64:
            self._pools.popitem(last=False)
        return pool

    def embed_query(self, text: str) -> np.ndarray | None:
        if not text or not self._vectors_ready():
            return None
        vec = self._query_cache.get(text)
        if vec is None:
            vec = self.embedder.model().encode([text])[0]
            self._query_cache[text] = vec
            while len(self._query_cache) > 256:
                self._query_cache.popitem(last=False)
        else:
            self._query_cache.move_to_end(text)
        return vec

    def close(self) -> None:
        self._helper.shutdown(wait=False)

    def forget_vectors(self, keys: list[int] | None = None) -> None:
        """Vectors of these records changed (None: all of them, e.g. a new model)."""
        if keys is None:
            self._vec_cache.clear()
        else:
            for k in keys:
                self._vec_cache.pop(k, None)

    def _tokens(self, text: str) -> int:
        """Token counts of rule lines and the header, remembered (they rarely change)."""
        n = self._token_cache.get(text)
        if n is None:
            n = self.embedder.count_tokens(text)
            if len(self._token_cache) > 1024:
                self._token_cache.clear()
            self._token_cache[text] = n
        return n

    # -- build ---------------------------------------------------------------------------------
    def build(self, vis: Visibility, query: str, budget: int, *, app_label: str | None = None) -> Psp:
        started = time.perf_counter()
        now = time.time()
        # The full-text query needs no vector: it runs in a helper thread (SQLite releases the
        # GIL) while this one builds the pool, embeds the query and asks chromadb.
        # A time the request names ("last week") promotes that period's records; its words are
        # left out of the full-text query (no record says "yesterday" about itself).
        when = timeq.resolve(query) if query else None
        words = when.rest if when is not None else query
        fts_future = self._helper.submit(self.store.fts_ranked, words, vis, CONTEXT_K) if words else None
        pool = self._pool(vis, now)
        qvec = self.embed_query(query)
        relevance = (
            self._context_relevance(words, qvec, vis, fts_future.result() if fts_future else [], when)
            if query
            else {}
        )
        context_records = self.store.by_keys(
            [k for k in relevance if k not in {r["key"] for r in pool.standing}]
        )
        for r in pool.standing:
            if r["key"] in relevance:
                context_records[r["key"]] = r

        rel_of: dict[int, float] = {}
        if qvec is not None and pool.matrix is not None:
            sims = pool.matrix @ qvec
            cal = self.embedder.calibration()
            rel_of = {
                k: retrieval.vector_relevance(float(c), *cal) for k, c in zip(pool.keys, sims, strict=True)
            }
        rel_of.update(relevance)  # hybrid retrieval's value wins where there is one

        def total(rec: dict[str, Any]) -> float:
            imp, fresh, freq = pool.static.get(rec["key"]) or _static(rec, now, pool.max_uses)
            return (
                WEIGHTS["importance"] * imp
                + WEIGHTS["relevance"] * rel_of.get(rec["key"], 0.0)
                + WEIGHTS["freshness"] * fresh
                + WEIGHTS["frequency"] * freq
            )

        def explain(rec: dict[str, Any]) -> dict[str, float]:
            imp, fresh, freq = pool.static.get(rec["key"]) or _static(rec, now, pool.max_uses)
            parts = {
                "importance": imp,
                "relevance": rel_of.get(rec["key"], 0.0),
                "freshness": fresh,
                "frequency": freq,
            }
            parts["total"] = sum(WEIGHTS[k] * v for k, v in parts.items())
            return {k: round(v, 4) for k, v in parts.items()}

        candidates: dict[str, list[dict[str, Any]]] = {
            "core": sorted(pool.core, key=lambda r: -total(r)),
            "context": sorted(
                (r for r in context_records.values() if relevance.get(r["key"], 0) > 0),
                key=lambda r: -total(r),
            ),
            "working": sorted(pool.standing, key=lambda r: -total(r)),
            "buffer": pool.recent,  # newest first, as the layer's name says
        }
        # The title and header line come off the top; the layers share what is left.
        header_tokens = self._tokens(HEADER) + 16
        shares = {name: int((budget - header_tokens) * share) for name, share in LAYERS}
        rules = self.store.rules()
        items: list[PspItem] = []
        used_keys: set[int] = set()
        carry = 0
        spent_total = header_tokens
        layer_budgets: dict[str, int] = {}
        for name in FILL_ORDER:
            allowance = shares[name] + carry
            layer_budgets[name] = max(0, allowance)
            spent = 0
            if name == "core":
                for rule in rules:
                    line = f"- {' '.join(rule['text'].split())}"
                    t = self._tokens(line) + 1
                    if spent + t > allowance and not (rule["pinned"] and spent_total + t <= budget):
                        continue
                    items.append(
                        PspItem(
                            "core",
                            "rule",
                            f"rule:{rule['id']}",
                            line,
                            t,
                            {"pinned": 1.0 if rule["pinned"] else 0.0},
                        )
                    )
                    spent += t
                    spent_total += t
            for rec in candidates[name]:
                if rec["key"] in used_keys:
                    continue
                t = rec["tokens"] or self.embedder.count_tokens(item_line(rec))
                if spent + t > allowance or spent_total + t > budget:
                    continue
                items.append(
                    PspItem(name, "record", rec["id"], item_line(rec), t, explain(rec), rec["source"])
                )
                used_keys.add(rec["key"])
                spent += t
                spent_total += t
            carry = allowance - spent
        text, version = self._render(items, vis, app_label)
        took = (time.perf_counter() - started) * 1000
        return Psp(
            version,
            text,
            items,
            budget,
            spent_total if items else 0,
            layer_budgets,
            took,
            "hybrid" if qvec is not None else "fts-only",
        )

    def _context_relevance(
        self,
        query: str,
        qvec: Any,
        vis: Visibility,
        fts_hits: list[tuple[int, float]],
        when: timeq.TimeRange | None = None,
    ) -> dict[int, float]:
        """Records relevant to this request (hybrid retrieval), above the noise floor."""
        vectors = self.vectors if self._vectors_ready() else None
        hits = retrieval.search(
            self.store,
            vectors,
            qvec,
            query,
            vis,
            CONTEXT_K,
            fts_hits=fts_hits,
            time_range=when,
            calibration=self.embedder.calibration(),
        )
        return {key: rel for key, rel in hits if rel >= MIN_CONTEXT_RELEVANCE}

    def _render(self, items: list[PspItem], vis: Visibility, app_label: str | None) -> tuple[str, str | None]:
        if not items:
            return "", None
        parts = ["# Personal System Prompt", HEADER]
        for name, _share in LAYERS:
            lines = [i.line for i in items if i.layer == name]
            if lines:
                parts.append(f"## {TITLES[name]}\n" + "\n".join(lines))
        text = "\n\n".join(parts)
        digest = hashlib.blake2b(f"{app_label or vis.app}\n{text}".encode(), digest_size=6).hexdigest()
        return text, f"psp-{digest}"


def _static(rec: dict[str, Any], now: float, max_uses: int) -> tuple[float, float, float]:
    """(importance, freshness, access frequency) of a record, each 0-1."""
    freshness = math.exp(-max(0.0, now - rec["ts"]) / 86400 / FRESH_DAYS * math.log(2))
    return float(rec["importance"]), freshness, math.log1p(rec["uses"]) / math.log1p(max(1, max_uses))


def budget_for(context_window: int | None, request_tokens: int, max_tokens: int | None, cap: int) -> int:
    """PSP tokens for a model: 15% of its window, at most `cap`, never crowding out the request."""
    window = context_window or 8192
    free = window - request_tokens - (max_tokens or min(1024, window // 8))
    return max(0, min(cap, int(window * 0.15), free // 2))


def iso_now() -> str:
    return datetime.now(UTC).isoformat()
