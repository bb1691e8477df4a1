"""What the index knows of each file: its size, mtime and content hash, how many passages it
gave, or why it was skipped. A plain SQLite file (`documents-index.sqlite3`) beside the
personal store: it holds paths, never content (the passages are in the encrypted store).

A row is written only after the file's records are durable in the personal store, so a crash
mid-index re-reads that file next time instead of believing it indexed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    pages INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,           -- indexed | skipped
    code TEXT,                      -- why skipped, as a word (encrypted, too_large, binary…)
    reason TEXT,                    -- why skipped (or what was left out), in words
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_folder ON files(folder);
"""


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    folder: str
    kind: str
    size: int
    mtime_ns: int
    hash: str | None
    chunks: int
    pages: int
    status: str
    code: str | None
    reason: str | None
    indexed_at: float


class Manifest:
    """Thread-safe: the indexer calls it from worker threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def folder(self, folder: str) -> dict[str, FileRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM files WHERE folder = ?", (folder,)).fetchall()
        return {r[0]: FileRow(*r) for r in rows}

    def get(self, path: str) -> FileRow | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return FileRow(*r) if r else None

    def under(self, prefix: str) -> list[FileRow]:
        """The row of `prefix` itself and of every file below it (a deleted folder)."""
        like = prefix.rstrip("/\\").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM files WHERE path = ? OR path LIKE ? ESCAPE '\\' OR path LIKE ? ESCAPE '\\'",
                (prefix, like + "/%", like + "\\\\%"),
            ).fetchall()
        return [FileRow(*r) for r in rows]

    def put(self, rows: Iterable[FileRow]) -> None:
        rows = list(rows)
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (r.path, r.folder, r.kind, r.size, r.mtime_ns, r.hash, r.chunks, r.pages, r.status,
                     r.code, r.reason, r.indexed_at)
                    for r in rows
                ],
            )
            self._db.execute("COMMIT")

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """Same content under a new mtime (a `touch`, a sync tool): remember the new stat."""
        with self._lock:
            self._db.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, indexed_at = ? WHERE path = ?",
                (size, mtime_ns, time.time(), path),
            )

    def delete(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
            self._db.execute("COMMIT")

    def totals(self) -> dict[str, dict[str, int]]:
        """Per folder: files indexed, passages, pages, files skipped."""
        with self._lock:
            rows = self._db.execute(
                "SELECT folder, SUM(status = 'indexed'), SUM(chunks), SUM(pages * (status = 'indexed')), "
                "SUM(status = 'skipped') FROM files GROUP BY folder"
            ).fetchall()
        return {f: {"files": a or 0, "chunks": b or 0, "pages": c or 0, "skipped": d or 0} for f, a, b, c, d in rows}

    def skipped(self, limit: int = 200) -> tuple[list[FileRow], int]:
        """Files skipped, or indexed with something left out, newest first; and how many."""
        where = "status = 'skipped' OR reason IS NOT NULL"
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM files WHERE {where} ORDER BY indexed_at DESC LIMIT ?", (limit,)
            ).fetchall()
            total = self._db.execute(f"SELECT COUNT(*) FROM files WHERE {where}").fetchone()[0]
        return [FileRow(*r) for r in rows], total

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM files")
