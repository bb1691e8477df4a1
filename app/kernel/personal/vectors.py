"""Record vectors in chromadb, partitioned so that a query never needs a metadata filter.

chromadb's filtered queries scan metadata: at 100k records a `where` on the source app took
65-580 ms here, against ~5 ms unfiltered. Visibility is therefore the *layout*: one collection
per source app (all its records) and one `shared` collection (every non-private record). An
app without `hinata:read` queries its own collection; with it, its own plus `shared`; the
user (admin) queries every source collection. A record can never come back to an app that
may not see it, because it was never in a collection that app queries.

chromadb holds only ids (= record keys), vectors and no text; the SQLite store is the source
of truth and the embedding queue there drives every change here. chromadb is imported lazily.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.personal.passages import MAX_PASSAGES, key_of, passage_id

if TYPE_CHECKING:
    import numpy as np

    from app.kernel.personal.store import VectorJob, Visibility

log = logging.getLogger(__name__)

SHARED = "shared"


def _collection_name(source: str) -> str:
    # chromadb names are [a-zA-Z0-9._-]{3,512}; app ids may hold anything, so hash them.
    return "src-" + hashlib.sha1(source.encode()).hexdigest()[:20]


class VectorIndex:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._sources: set[str] = set()
        # Vectors per collection: `count()` costs ~3 ms at 100k, too much to ask on every query.
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def open(self) -> VectorIndex:
        """Import chromadb and open the folder (~1 s: call it off the event loop)."""
        import chromadb
        from chromadb.config import Settings

        self.folder.mkdir(parents=True, exist_ok=True)
        self._client = chromadb.PersistentClient(
            path=str(self.folder), settings=Settings(anonymized_telemetry=False, allow_reset=True)
        )
        for c in self._client.list_collections():
            name = c if isinstance(c, str) else c.name
            col = self._client.get_collection(name, embedding_function=None)
            self._collections[name] = col
            self._counts[name] = col.count()
            if name != SHARED and col.metadata and col.metadata.get("source", "-") != "-":
                self._sources.add(col.metadata["source"])
        return self

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def _collection(self, name: str, source: str | None = None) -> Any:
        col = self._collections.get(name)
        if col is None:
            with self._lock:
                col = self._collections.get(name)
                if col is None:
                    col = self._client.get_or_create_collection(
                        name,
                        embedding_function=None,
                        metadata={"source": source or "-"},
                        configuration={"hnsw": {"space": "cosine"}},
                    )
                    self._collections[name] = col
                    if source:
                        self._sources.add(source)
        return col

    def apply(self, jobs: list[VectorJob], vectors: dict[int, np.ndarray]) -> None:
        """Upserts (with their vectors: one row per passage) and deletions from the store's queue.

        A record's first passage has the record's key as its id, the others `key#i`; a changed
        record's passages beyond its new count, and all of a deleted one's, are removed."""
        by_col_upsert: dict[str, tuple[list[str], list[Any]]] = {}
        by_col_delete: dict[str, list[str]] = {}
        for job in jobs:
            own = _collection_name(job.source)
            if job.op in ("upsert", "update") and job.key in vectors:
                rows = vectors[job.key]
                rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
                ids = [passage_id(job.key, i) for i in range(len(rows))]
                stale = [passage_id(job.key, i) for i in range(len(rows), MAX_PASSAGES)]
                targets = [own] + ([SHARED] if job.access != "private" else [])
                for name in targets:
                    col_ids, vecs = by_col_upsert.setdefault(name, ([], []))
                    col_ids.extend(ids)
                    vecs.extend(rows)
                    if job.op == "update":
                        by_col_delete.setdefault(name, []).extend(stale)
                if job.access == "private" and job.op == "update":  # it may have been shared before
                    by_col_delete.setdefault(SHARED, []).extend(ids + stale)
            elif job.op == "delete":
                every = [passage_id(job.key, i) for i in range(MAX_PASSAGES)]
                by_col_delete.setdefault(own, []).extend(every)
                by_col_delete.setdefault(SHARED, []).extend(every)
        sources = {_collection_name(j.source): j.source for j in jobs}
        for name, ids in by_col_delete.items():  # deletions first: an update's upsert comes after
            if name in self._collections or name == SHARED:
                self._collection(name, sources.get(name)).delete(ids=ids)
        for name, (ids, vecs) in by_col_upsert.items():
            self._collection(name, sources.get(name)).upsert(ids=ids, embeddings=vecs)
        for name in {*by_col_delete, *by_col_upsert}:
            if name in self._collections:
                self._counts[name] = self._collections[name].count()

    def query(self, vector: np.ndarray, vis: Visibility, k: int) -> list[tuple[int, float]]:
        """(record key, cosine similarity of its best passage) of the nearest visible records, best first."""
        if vis.admin:
            names = [_collection_name(s) for s in self._sources]
        else:
            names = [_collection_name(vis.app or "")]
            if vis.shared:
                names.append(SHARED)
        best: dict[int, float] = {}
        for name in names:
            col = self._collections.get(name)
            if col is None:
                continue
            n = self._counts.get(name, 0)
            if n == 0:
                continue
            # Twice k: several of the nearest may be passages of one long record.
            res = col.query(query_embeddings=[vector], n_results=min(2 * k, n), include=["distances"])
            for sid, dist in zip(res["ids"][0], res["distances"][0], strict=True):
                key = key_of(sid)
                sim = 1.0 - float(dist)
                if sim > best.get(key, -2.0):
                    best[key] = sim
        return sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:k]

    def vectors_of(self, keys: list[int], source_of: dict[int, str]) -> dict[int, np.ndarray]:
        """Stored vectors of some records (for scoring the PSP's standing layers)."""
        import numpy as np

        by_col: dict[str, list[str]] = {}
        for key in keys:
            src = source_of.get(key)
            if src is not None:
                by_col.setdefault(_collection_name(src), []).append(str(key))
        out: dict[int, np.ndarray] = {}
        for name, ids in by_col.items():
            col = self._collections.get(name)
            if col is None:
                continue
            got = col.get(ids=ids, include=["embeddings"])
            for sid, emb in zip(got["ids"], got["embeddings"], strict=True):
                out[int(sid)] = np.asarray(emb, dtype=np.float32)
        return out

    def count(self) -> int:
        """Vectors in the source collections (a long record has one per passage; shared ones are
        counted once, in their source's collection)."""
        return sum(c.count() for n, c in self._collections.items() if n != SHARED)  # exact, uncached

    def drop_all(self) -> None:
        with self._lock:
            for name in list(self._collections):
                self._client.delete_collection(name)
            self._collections.clear()
            self._sources.clear()
            self._counts.clear()

    def close(self) -> None:
        """Release the folder (chromadb caches one system per path until its last client closes)."""
        self._collections.clear()
        self._sources.clear()
        client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            client.close()
