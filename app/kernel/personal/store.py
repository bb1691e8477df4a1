"""The personal database: HiNATA records, FTS5 index, enhancements, Core rules, queues, audit.

One SQLCipher file (`data_dir/personal.sqlite3`), encrypted with a random 256-bit key kept in
the OS keyring (SecretStore): every page — records, the full-text index, derived tags, the
audit — is ciphertext on disk. WAL mode as the kernel's database: a batch is acknowledged
only after its transaction commits, and a committed transaction survives kill -9.

All methods are synchronous and thread-safe (peewee gives each thread its own connection);
the service runs them in worker threads so the event loop never waits on the disk.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from peewee import SqliteDatabase

from app.kernel.errors import ConfigError, NotFoundError, PermissionDeniedError
from app.kernel.personal.enhance import Enhancement
from app.kernel.personal.hinata import HinataIn, content_hash
from app.kernel.personal.textindex import Query, build_query, fts_query, has_cjk, index_text
from app.kernel.store.personal_tables import (
    PERSONAL_TABLES,
    AuditRow,
    CoreRuleRow,
    EmbedQueueRow,
    EnhancementRow,
    EnhanceQueueRow,
    ImportedFileRow,
    migrate_personal,
)

KEY_SECRET = "personal-db-key"
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 5000,
    "cache_size": -32000,
    "foreign_keys": 0,
}
FTS_SCAN_CAP = 1000
# Records with one of these tags are standing preferences: candidates for the PSP's Core layer.
CORE_TAGS = frozenset({"preference", "rule", "core", "pinned"})
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")

RECORD_COLUMNS = (
    "key",
    "id",
    "source",
    "access",
    "ts",
    "timestamp",
    "highlight",
    "note",
    "address",
    "tags",
    "raw_data",
    "metadata",
    "tokens",
    "importance",
    "uses",
    "last_used",
)


_RECORD_FIELDS = (
    "source, access, ts, timestamp, highlight, note, address, tags, raw_data, metadata, content_hash, "
    "tokens, importance, core, updated_at"
)
_INSERT_RECORD = (
    f"INSERT INTO hinata(id, {_RECORD_FIELDS}, uses, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"
)
_UPDATE_RECORD = (
    "UPDATE hinata SET " + ", ".join(f"{f.strip()} = ?" for f in _RECORD_FIELDS.split(",")) + " WHERE key = ?"
)


# CROSS JOIN fixes SQLite's join order: the full-text match first, then the record rows. With a
# plain JOIN and `h.source = ?` (an app without hinata:read, or a source filter) the planner
# walked the source index and ran the MATCH once per row: 24 ms for 600 records, O(n) in the store.
_FTS_FIRST = "CROSS JOIN hinata h ON h.key = f.rowid"
_INSERT_FTS = "INSERT INTO hinata_fts(rowid, highlight, note, tags, extra) VALUES (?, ?, ?, ?, ?)"


def _fts_row(key: int, highlight: str, note: str, tags: list[str], extra: str) -> tuple[Any, ...]:
    """One full-text row: the text as the index should tokenize it (CJK as bigrams)."""
    return (key, index_text(highlight), index_text(note), index_text(" ".join(tags)), index_text(extra))


def reindex_cjk(db: Any) -> int:
    """Index again every record holding CJK text (indexed as one token per run before
    personal schema v4). Runs inside the migration's transaction; returns how many."""
    n = 0
    last = 0
    while True:
        rows = db.execute_sql(
            "SELECT h.key, h.highlight, h.note, h.tags, e.tags, e.topics, e.concepts FROM hinata h "
            "LEFT JOIN hinata_enhancement e ON e.key = h.key WHERE h.key > ? ORDER BY h.key LIMIT 1000",
            (last,),
        ).fetchall()
        if not rows:
            return n
        for key, hl, note, tags, etags, topics, concepts in rows:
            last = key
            extra = " ".join(
                [
                    *(orjson.loads(etags) if etags else []),
                    *(orjson.loads(topics) if topics else []),
                    *(orjson.loads(concepts) if concepts else []),
                ]
            )
            tag_list = orjson.loads(tags) if tags else []
            if not has_cjk(" ".join([hl or "", note or "", *tag_list, extra])):
                continue
            db.execute_sql("DELETE FROM hinata_fts WHERE rowid = ?", (key,))
            db.execute_sql(_INSERT_FTS, _fts_row(key, hl or "", note or "", tag_list, extra))
            n += 1


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class _Rows(list):
    """Fetched rows, with the two cursor methods the callers use."""

    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class EncryptedDatabase(SqliteDatabase):
    """peewee over sqlcipher3, keyed with a raw 256-bit key (no passphrase KDF on every connect)."""

    def __init__(self, path: str, *, key_hex: str, **kw: Any) -> None:
        if not _HEX_RE.match(key_hex):
            raise ConfigError("the personal database key is malformed")
        self._key_hex = key_hex
        super().__init__(path, **kw)

    def _connect(self):  # type: ignore[override]
        import sqlcipher3

        conn = sqlcipher3.connect(self.database, isolation_level=None, check_same_thread=False, timeout=5)
        try:
            conn.execute(f"PRAGMA key = \"x'{self._key_hex}'\"")
            conn.execute("PRAGMA cipher_memory_security = OFF")  # mlock on every page costs ~2x reads
            self._add_conn_hooks(conn)
        except Exception:
            conn.close()
            raise
        return conn


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which records a caller may see. `app=None, admin=True` is the user (CLI, UI)."""

    app: str | None
    shared: bool = False  # hinata:read: shared/public records of other apps too
    admin: bool = False

    def sql(self, alias: str = "") -> tuple[str, list[Any]]:
        p = f"{alias}." if alias else ""
        if self.admin:
            return "1", []
        if self.shared:
            return f"({p}source = ? OR {p}access != 'private')", [self.app]
        return f"{p}source = ?", [self.app]

    def allows(self, source: str, access: str) -> bool:
        return self.admin or source == self.app or (self.shared and access != "private")

    @property
    def cache_key(self) -> tuple[str | None, bool, bool]:
        return (self.app, self.shared, self.admin)


ADMIN = Visibility(app=None, admin=True)


@dataclass(frozen=True, slots=True)
class Filters:
    """What a search keeps, besides visibility: a tag, a source app, a time range, an access level."""

    tag: str | None = None
    source: str | None = None
    since: float | None = None
    until: float | None = None
    access: str | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None and v != "" for v in (self.tag, self.source, self.since, self.until, self.access)
        )

    def sql(self, vis: Visibility) -> tuple[str, list[Any]]:
        """A WHERE condition over `hinata h`: visible to `vis` and within every filter."""
        vsql, vparams = vis.sql("h")
        where, params = [vsql], list(vparams)
        if self.tag:
            where.append("EXISTS (SELECT 1 FROM json_each(h.tags) WHERE lower(json_each.value) = lower(?))")
            params.append(self.tag.lstrip("#"))
        if self.source:
            where.append("h.source = ?")
            params.append(self.source)
        if self.since is not None:
            where.append("h.ts >= ?")
            params.append(self.since)
        if self.until is not None:
            where.append("h.ts <= ?")
            params.append(self.until)
        if self.access:
            where.append("h.access = ?")
            params.append(self.access)
        return " AND ".join(where), params


@dataclass(frozen=True, slots=True)
class VectorJob:
    key: int
    op: str  # "upsert" (new record) | "update" (changed record) | "delete"
    source: str
    queued_at: float
    text: str | None = None
    access: str | None = None


def record_text(highlight: str, note: str, tags: list[str]) -> str:
    """What gets embedded: the passage, the user's words about it, its tags."""
    parts = [highlight, note]
    if tags:
        parts.append("tags: " + ", ".join(tags))
    return "\n".join(p for p in parts if p)


class PersonalStore:
    def __init__(self, path: Path, key_hex: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = EncryptedDatabase(str(path), key_hex=key_hex, pragmas=PRAGMAS)
        self.db.bind(PERSONAL_TABLES, bind_refs=False, bind_backrefs=False)
        try:
            self.db.connect(reuse_if_open=True)
            migrate_personal(self.db, reindex=reindex_cjk)
        except Exception as e:
            if "not a database" in str(e) or "file is not a database" in str(e):
                raise ConfigError(
                    f"cannot open {path}: the key in the keyring does not match (was the keyring reset?). "
                    "Move the file away to start a new personal store; the old one cannot be read without its key"
                ) from None
            raise
        self._write_lock = threading.Lock()  # one writer at a time; readers never wait (WAL)
        self.generation = 0  # bumps on every change; caches compare it

    @classmethod
    def open(cls, path: Path, secret_store: Any) -> PersonalStore:
        key = secret_store.get(KEY_SECRET)
        if key is None:
            if path.exists() and path.stat().st_size > 0:
                raise ConfigError(
                    f"{path} exists but its key is not in the keyring ({secret_store.describe()}); "
                    "without it the personal data cannot be read. Move the file away to start over"
                )
            key = secrets.token_hex(32)
            secret_store.set(KEY_SECRET, key)
        return cls(path, key)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _writing(self, *, bump: bool) -> Iterator[None]:
        """One write transaction; with `bump`, caches learn of it only once it is committed
        (bumping inside would let a reader cache pre-commit rows under the new generation)."""
        with self._write_lock:
            with self.db.atomic():
                yield
            if bump:
                self.generation += 1

    def _sql(self, sql: str, params: Any = ()) -> _Rows:
        # Always drain and close: a half-read cursor keeps its connection's read snapshot open,
        # and that thread would then keep seeing the store as it was (WAL snapshot isolation).
        cur = self.db.execute_sql(sql, params)
        try:
            return _Rows(cur.fetchall())
        finally:
            cur.close()

    # -- writes ---------------------------------------------------------------------------------
    def upsert(
        self,
        records: list[HinataIn],
        tokens: dict[str, int],
        enhancements: dict[str, Enhancement],
        *,
        admin: bool = False,
        queue_model: bool = False,
    ) -> list[tuple[str, str]]:
        """Store a batch in one transaction; returns (id, "created"|"updated"|"unchanged") each.

        An id owned by another app is refused for the whole batch (an app can never overwrite
        another's record). `enhancements` are the local ones computed beforehand; with
        `queue_model` the record also waits for the model's enhancement.
        """
        now = time.time()
        results: list[tuple[str, str]] = []
        with self._writing(bump=True):
            ids = [r.id for r in records]
            existing = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, rid, source, chash in self._sql(
                    f"SELECT key, id, source, content_hash FROM hinata WHERE id IN ({marks})", chunk
                ):
                    existing[rid] = (key, source, chash)
            for rec in records:
                assert rec.id and rec.source and rec.timestamp
                old = existing.get(rec.id)
                if old and old[1] != rec.source and not admin:
                    raise PermissionDeniedError(f"record {rec.id!r} belongs to another app")
                chash = content_hash(rec)
                if old and old[2] == chash:
                    results.append((rec.id, "unchanged"))
                    continue
                values = (
                    rec.source,
                    rec.access,
                    rec.timestamp.timestamp(),
                    rec.timestamp.isoformat(),
                    rec.highlight,
                    rec.note,
                    rec.address,
                    _dumps(rec.tag),
                    _dumps(rec.raw_data),
                    _dumps(rec.metadata),
                    chash,
                    tokens.get(rec.id, 0),
                    enhancements[rec.id].importance,
                    int(any(t.lower() in CORE_TAGS for t in rec.tag)),
                    now,
                )
                # Raw SQL on this path: peewee's query building cost more than SQLite itself.
                cur = self.db.cursor()
                if old:
                    key = old[0]
                    cur.execute(_UPDATE_RECORD, (*values, key))
                    cur.execute("DELETE FROM hinata_fts WHERE rowid = ?", (key,))
                    results.append((rec.id, "updated"))
                else:
                    cur.execute(_INSERT_RECORD, (rec.id, *values, now))
                    key = cur.lastrowid
                    results.append((rec.id, "created"))
                enh = enhancements[rec.id]
                cur.execute(_INSERT_FTS, _fts_row(key, rec.highlight, rec.note, rec.tag, enh.words))
                cur.execute(
                    "INSERT OR REPLACE INTO hinata_enhancement(key, tags, topics, concepts, importance, method, "
                    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        _dumps(enh.tags),
                        _dumps(enh.topics),
                        _dumps(enh.concepts),
                        enh.importance,
                        enh.method,
                        now,
                    ),
                )
                # "update": the vector may sit in the shared collection from an earlier access level
                cur.execute(
                    "INSERT OR REPLACE INTO embed_queue(key, op, source, queued_at) VALUES (?, ?, ?, ?)",
                    (key, "update" if old else "upsert", rec.source, now),
                )
                if queue_model:
                    cur.execute(
                        "INSERT OR REPLACE INTO enhance_queue(key, queued_at) VALUES (?, ?)", (key, now)
                    )
                cur.close()
        return results

    def delete(self, record_id: str, vis: Visibility) -> bool:
        """Forget one record everywhere: row, FTS entry, enhancement; its vector via the queue."""
        with self._writing(bump=True):
            row = self._sql("SELECT key, source, access FROM hinata WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return False
            key, source, _access = row
            if not (vis.admin or source == vis.app):
                raise PermissionDeniedError(
                    f"record {record_id!r} belongs to another app; only it or the user may delete it"
                )
            self._forget_keys([key])
        return True

    def _forget_keys(self, keys: list[int]) -> None:
        now = time.time()
        for key in keys:
            row = self._sql("SELECT source FROM hinata WHERE key = ?", (key,)).fetchone()
            if row is None:
                continue
            self._sql("DELETE FROM hinata WHERE key = ?", (key,))
            self._sql("DELETE FROM hinata_fts WHERE rowid = ?", (key,))
            self._sql("DELETE FROM hinata_enhancement WHERE key = ?", (key,))
            self._sql("DELETE FROM enhance_queue WHERE key = ?", (key,))
            self._sql(
                "INSERT OR REPLACE INTO embed_queue(key, op, source, queued_at) VALUES (?, 'delete', ?, ?)",
                (key, row[0], now),
            )

    def delete_ids(self, record_ids: list[str]) -> int:
        with self._writing(bump=True):
            keys = [
                k
                for (k,) in (
                    self._sql("SELECT key FROM hinata WHERE id = ?", (rid,)).fetchone() or (None,)
                    for rid in record_ids
                )
                if k is not None
            ]
            self._forget_keys(keys)
        return len(keys)

    def delete_all(self) -> int:
        """Everything the user wrote or we derived, gone. Vectors are dropped by the caller."""
        with self._writing(bump=True):
            n = self._sql("SELECT count(*) FROM hinata").fetchone()[0]
            for t in (
                "hinata",
                "hinata_enhancement",
                "embed_queue",
                "enhance_queue",
                "core_rule",
                "imported_file",
                "personal_audit",
            ):
                self._sql(f"DELETE FROM {t}")
            self._sql("DELETE FROM hinata_fts")
        # Reclaim the pages so deleted text is not left in free pages of the file.
        self._sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self._sql("VACUUM")
        return n

    def set_enhancement(
        self,
        key: int,
        *,
        tags: list[str],
        topics: list[str],
        concepts: list[str],
        importance: float,
        method: str,
    ) -> None:
        """Store what enhancement derived; the record itself is only re-indexed, never changed."""
        with self._writing(bump=True):
            rec = self._sql("SELECT highlight, note, tags FROM hinata WHERE key = ?", (key,)).fetchone()
            if rec is None:
                return
            EnhancementRow.insert(
                key=key,
                tags=tags,
                topics=topics,
                concepts=concepts,
                importance=importance,
                method=method,
                updated_at=time.time(),
            ).on_conflict_replace().execute()
            self._sql("UPDATE hinata SET importance = ? WHERE key = ?", (importance, key))
            extra = " ".join([*tags, *topics, *concepts])
            self._sql("DELETE FROM hinata_fts WHERE rowid = ?", (key,))
            self._sql(_INSERT_FTS, _fts_row(key, rec[0], rec[1], orjson.loads(rec[2]), extra))
            self._sql("DELETE FROM enhance_queue WHERE key = ?", (key,))

    def note_uses(self, counts: dict[str, int], when: float) -> None:
        """Access frequency: how many PSPs each record went into (flushed in batches)."""
        with self._writing(bump=True):  # frequency is part of every score
            for record_id, n in counts.items():
                self._sql(
                    "UPDATE hinata SET uses = uses + ?, last_used = ? WHERE id = ?", (n, when, record_id)
                )

    # -- reads ------------------------------------------------------------------------------------
    def get(self, record_id: str) -> dict[str, Any] | None:
        row = self._sql(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM hinata WHERE id = ?", (record_id,)
        ).fetchone()
        return self._row(row) if row else None

    def by_keys(self, keys: list[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            sql = (
                f"SELECT {', '.join(RECORD_COLUMNS)} FROM hinata WHERE key IN ({','.join('?' * len(chunk))})"
            )
            for row in self._sql(sql, chunk):
                out[row[0]] = self._row(row)
        return out

    @staticmethod
    def _row(row: tuple[Any, ...]) -> dict[str, Any]:
        d = dict(zip(RECORD_COLUMNS, row, strict=True))
        for k in ("tags", "raw_data", "metadata"):
            d[k] = orjson.loads(d[k]) if d[k] is not None else ([] if k == "tags" else None)
        return d

    def enhancement(self, key: int) -> dict[str, Any] | None:
        row = EnhancementRow.get_or_none(EnhancementRow.key == key)
        if row is None:
            return None
        return {
            "tags": row.tags,
            "topics": row.topics,
            "concepts": row.concepts,
            "importance": row.importance,
            "method": row.method,
        }

    def enhancements(self, keys: list[int]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for key, tags, topics in self._sql(
                f"SELECT key, tags, topics FROM hinata_enhancement WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                out[key] = {"tags": orjson.loads(tags), "topics": orjson.loads(topics)}
        return out

    def search(
        self,
        vis: Visibility,
        *,
        text: str | None = None,
        tag: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        access: str | None = None,
        limit: int = 20,
        offset: int = 0,
        phrase: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Records matching every given filter and every word (and phrase) of `text`, newest
        first (best BM25 match first with text); and the total. The exact-match mode: ranked
        search is `retrieval.search`."""
        f = Filters(tag=tag, source=source, since=since, until=until, access=access)
        cond, params = f.sql(vis)
        tables = "hinata h"
        order = "h.ts DESC"
        if text or phrase:
            q = build_query(Query.parse(text or "", phrase), any_word=False)
            if q is None:
                return [], 0
            tables = f"hinata_fts f {_FTS_FIRST}"
            cond += " AND hinata_fts MATCH ?"
            params.append(q)
            order = "bm25(hinata_fts, 2.0, 1.0, 1.5, 0.5)"
        total = self._sql(f"SELECT count(*) FROM {tables} WHERE {cond}", params).fetchone()[0]
        cols = ", ".join(f"h.{c}" for c in RECORD_COLUMNS)
        rows = self._sql(
            f"SELECT {cols} FROM {tables} WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return [self._row(r) for r in rows], total

    def fts_ranked(
        self,
        text: str | Query,
        vis: Visibility,
        limit: int,
        filters: Filters | None = None,
    ) -> list[tuple[int, float]]:
        """(key, BM25 score - higher is better) for the best `limit` visible matches of any word
        (phrases in the query are required), within `filters`.

        BM25 is computed for the newest FTS_SCAN_CAP visible matches only: a query of common
        words matches tens of thousands of records, and scoring them all cost ~40 ms at 100k
        records against ~3 ms for a thousand. Rare words (what full text is best at) have fewer
        matches than that and are ranked over the whole store; the vector side always is."""
        query = text if isinstance(text, Query) else Query.parse(text)
        q = build_query(query, any_word=True)
        if q is None:
            return []
        if filters is not None and filters.any:
            cond, params = filters.sql(vis)
            join, cond = _FTS_FIRST, f"AND {cond}"
        else:
            vsql, params = vis.sql("h")
            join = "" if vis.admin else _FTS_FIRST
            cond = "" if vis.admin else f"AND {vsql}"
        sql = (
            "SELECT key, s FROM (SELECT f.rowid AS key, -bm25(hinata_fts, 2.0, 1.0, 1.5, 0.5) AS s "
            f"FROM hinata_fts f {join} WHERE hinata_fts MATCH ? {cond} ORDER BY f.rowid DESC LIMIT ?) "
            "ORDER BY s DESC LIMIT ?"
        )
        return [(k, s) for k, s in self._sql(sql, (q, *params, FTS_SCAN_CAP, limit))]

    def filtered_keys(
        self, vis: Visibility, filters: Filters, limit: int
    ) -> tuple[list[tuple[int, str]], int]:
        """The newest `limit` visible records within `filters` as (key, source), and how many in all."""
        cond, params = filters.sql(vis)
        total = self._sql(f"SELECT count(*) FROM hinata h WHERE {cond}", params).fetchone()[0]
        rows = self._sql(
            f"SELECT h.key, h.source FROM hinata h WHERE {cond} ORDER BY h.ts DESC LIMIT ?", [*params, limit]
        )
        return [(k, src) for k, src in rows], total

    def allowed(self, vis: Visibility, filters: Filters, keys: list[int]) -> set[int]:
        """Which of `keys` are visible and within `filters`."""
        out: set[int] = set()
        cond, params = filters.sql(vis)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                k
                for (k,) in self._sql(
                    f"SELECT h.key FROM hinata h WHERE {cond} AND h.key IN ({marks})", [*params, *chunk]
                )
            )
        return out

    def candidates(
        self, vis: Visibility, *, since: float | None, order: str, limit: int
    ) -> list[dict[str, Any]]:
        """Visible records for the PSP's standing layers: the latest, the most important/used, or
        the ones the user marked as a standing preference (tag preference/rule/core/pinned)."""
        vsql, vparams = vis.sql()
        orders = {
            "recent": "ts DESC",
            "standing": "importance + 0.05 * min(uses, 20) DESC, ts DESC",
            "core": "importance DESC, ts DESC",
        }
        cond = vsql + (" AND ts >= ?" if since is not None else "")
        params = [*vparams, *([since] if since is not None else [])]
        if order == "core":
            cond += " AND core = 1"
        if order == "standing":  # rank on the covering index first, then read only the winners' rows
            keys = [
                k
                for (k,) in self._sql(
                    f"SELECT key FROM hinata INDEXED BY hinata_standing WHERE {cond} ORDER BY {orders[order]} LIMIT ?",
                    [*params, limit],
                )
            ]
            rows = self.by_keys(keys)
            return [rows[k] for k in keys if k in rows]
        sql = f"SELECT {', '.join(RECORD_COLUMNS)} FROM hinata WHERE {cond} ORDER BY {orders[order]} LIMIT ?"
        return [self._row(r) for r in self._sql(sql, [*params, limit])]

    def count(self, vis: Visibility = ADMIN) -> int:
        vsql, vparams = vis.sql()
        return self._sql(f"SELECT count(*) FROM hinata WHERE {vsql}", vparams).fetchone()[0]

    def export(self) -> Iterator[dict[str, Any]]:
        """Every record with its enhancement, oldest first, in pages (the file may be large)."""
        last = 0
        while True:
            rows = self._sql(
                f"SELECT {', '.join(RECORD_COLUMNS)} FROM hinata WHERE key > ? ORDER BY key LIMIT 500",
                (last,),
            ).fetchall()
            if not rows:
                return
            for r in rows:
                d = self._row(r)
                last = d["key"]
                yield d

    # -- queues --------------------------------------------------------------------------------------
    def pending_vectors(self, limit: int) -> list[VectorJob]:
        """Queued vector work, oldest first."""
        rows = self._sql(
            "SELECT q.key, q.op, q.source, q.queued_at, h.highlight, h.note, h.tags, h.access "
            "FROM embed_queue q LEFT JOIN hinata h ON h.key = q.key ORDER BY q.queued_at LIMIT ?",
            (limit,),
        ).fetchall()
        out = []
        for key, op, source, queued_at, hl, note, tags, access in rows:
            if op in ("upsert", "update") and hl is not None:
                out.append(
                    VectorJob(key, op, source, queued_at, record_text(hl, note, orjson.loads(tags)), access)
                )
            else:
                out.append(VectorJob(key, "delete", source, queued_at))
        return out

    def vectors_done(self, jobs: list[VectorJob]) -> None:
        """Drop handled queue entries — not ones re-queued (newer `queued_at`) while we worked."""
        if not jobs:
            return
        with self._write_lock, self.db.atomic():
            for job in jobs:
                self._sql("DELETE FROM embed_queue WHERE key = ? AND queued_at = ?", (job.key, job.queued_at))

    def queue_all_vectors(self) -> int:
        """Re-embed everything (the vector folder was lost or the model changed)."""
        with self._write_lock, self.db.atomic():
            self._sql(
                "INSERT OR REPLACE INTO embed_queue(key, op, source, queued_at) "
                "SELECT key, 'upsert', source, ? FROM hinata",
                (time.time(),),
            )
            return self._sql("SELECT count(*) FROM embed_queue").fetchone()[0]

    def vector_backlog(self) -> int:
        return self._sql("SELECT count(*) FROM embed_queue").fetchone()[0]

    def pending_enhancements(self, limit: int) -> list[dict[str, Any]]:
        rows = self._sql(
            f"SELECT {', '.join('h.' + c for c in RECORD_COLUMNS)} FROM enhance_queue q "
            "JOIN hinata h ON h.key = q.key ORDER BY q.queued_at LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._row(r) for r in rows]

    def enhance_backlog(self) -> int:
        return self._sql("SELECT count(*) FROM enhance_queue").fetchone()[0]

    # -- Core rules --------------------------------------------------------------------------------
    def rules(self) -> list[dict[str, Any]]:
        rows = CoreRuleRow.select().order_by(CoreRuleRow.pinned.desc(), CoreRuleRow.position, CoreRuleRow.id)
        return [
            {
                "id": r.id,
                "text": r.text,
                "pinned": r.pinned,
                "position": r.position,
                "updated_at": r.updated_at,
            }
            for r in rows
        ]

    def add_rule(self, text: str, pinned: bool) -> dict[str, Any]:
        now = time.time()
        with self._writing(bump=True):
            pos = self._sql("SELECT coalesce(max(position), 0) + 1 FROM core_rule").fetchone()[0]
            rid = CoreRuleRow.insert(
                text=text, pinned=pinned, position=pos, created_at=now, updated_at=now
            ).execute()
        return {"id": rid, "text": text, "pinned": pinned, "position": pos, "updated_at": now}

    def update_rule(self, rule_id: int, *, text: str | None, pinned: bool | None) -> dict[str, Any]:
        with self._writing(bump=True):
            row = CoreRuleRow.get_or_none(CoreRuleRow.id == rule_id)
            if row is None:
                raise NotFoundError(f"no Core rule {rule_id}")
            if text is not None:
                row.text = text
            if pinned is not None:
                row.pinned = pinned
            row.updated_at = time.time()
            row.save()
        return {
            "id": row.id,
            "text": row.text,
            "pinned": row.pinned,
            "position": row.position,
            "updated_at": row.updated_at,
        }

    def delete_rule(self, rule_id: int) -> bool:
        with self._writing(bump=True):
            n = CoreRuleRow.delete().where(CoreRuleRow.id == rule_id).execute()
        return bool(n)

    # -- Markdown import state ----------------------------------------------------------------------
    def imported_files(self, prefix: str) -> dict[str, tuple[str, str, float]]:
        rows = ImportedFileRow.select().where(ImportedFileRow.path.startswith(prefix))
        return {r.path: (r.record_id, r.content_hash, r.mtime) for r in rows}

    def set_imported(self, entries: list[tuple[str, str, str, float]], removed: list[str]) -> None:
        with self._write_lock, self.db.atomic():
            for path, rid, chash, mtime in entries:
                ImportedFileRow.insert(
                    path=path, record_id=rid, content_hash=chash, mtime=mtime
                ).on_conflict_replace().execute()
            for path in removed:
                ImportedFileRow.delete().where(ImportedFileRow.path == path).execute()

    # -- audit ---------------------------------------------------------------------------------------
    def audit(self, entries: list[tuple[float, str | None, str, dict[str, Any]]]) -> None:
        with self._write_lock, self.db.atomic():
            AuditRow.insert_many(
                [
                    {"ts": ts, "app": app, "action": action, "detail": detail}
                    for ts, app, action, detail in entries
                ]
            ).execute()

    def audit_log(self, limit: int = 100, app: str | None = None) -> list[dict[str, Any]]:
        q = AuditRow.select().order_by(AuditRow.id.desc()).limit(limit)
        if app:
            q = q.where(AuditRow.app == app)
        return [{"ts": r.ts, "app": r.app, "action": r.action, "detail": r.detail} for r in q]


__all__ = [
    "ADMIN",
    "EmbedQueueRow",
    "EnhanceQueueRow",
    "Filters",
    "PersonalStore",
    "Visibility",
    "fts_query",
    "record_text",
]
