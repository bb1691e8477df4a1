"""The incremental indexer: folders and changed paths → passages in the personal store.

For each file it compares the size and mtime with the manifest (equal: not read at all), then
the content hash (equal: only the new mtime is remembered), and otherwise reads, extracts and
chunks it in a worker thread and stores its passages as HiNATA records through the personal
service's public API, 100 a batch. A changed file keeps its record ids (`doc:<file>:<n>`), so
an unchanged passage stays "unchanged" in the store; passages past the new end are forgotten.
Files gone from a folder are forgotten, unless the folder itself is gone (an unplugged disk):
then nothing is removed and the status says so.

Every job runs on one worker, in order: a scan, a batch of watched changes and a removal never
interleave, so the manifest and the store agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.kernel.documents import chunking
from app.kernel.documents.events import DocumentsIndexed, DocumentsProgress
from app.kernel.documents.extract import extract, kind_of, read_file, skipped_dir
from app.kernel.documents.manifest import FileRow, Manifest
from app.kernel.documents.pieces import Skip, why
from app.kernel.errors import ByenatosError, NotFoundError

if TYPE_CHECKING:
    from app.kernel.documents.folders import FolderEntry
    from app.kernel.events import EventBus
    from app.kernel.personal.service import Caller, PersonalService

log = logging.getLogger(__name__)

SOURCE = "documents"  # the records' `source`: the document index is an app of the kernel's own
BATCH = 100  # records per personal.add (its batch limit)
PROGRESS_EVERY_S = 0.5
RETRY_CODES = ("unreadable", "vanished")  # skipped for a reason that may pass: try again each scan


@dataclass
class Report:
    """What one job did."""

    folder: str | None
    trigger: str
    indexed: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    pages: int = 0
    chunks: int = 0
    files_total: int = 0
    files_done: int = 0
    current: str = ""
    problem: str = ""
    started: float = field(default_factory=time.monotonic)
    paths: list[str] = field(default_factory=list)

    def touched(self, path: str) -> None:
        if len(self.paths) < 50:
            self.paths.append(path)

    def event(self) -> DocumentsIndexed:
        return DocumentsIndexed(
            folder=self.folder, trigger=self.trigger, indexed=self.indexed, unchanged=self.unchanged,
            skipped=self.skipped, removed=self.removed, pages=self.pages, chunks=self.chunks,
            seconds=round(time.monotonic() - self.started, 3), paths=tuple(self.paths), problem=self.problem,
        )

    def progress(self) -> DocumentsProgress:
        elapsed = time.monotonic() - self.started
        left = self.files_total - self.files_done
        eta = elapsed / self.files_done * left if self.files_done and left > 0 else None
        return DocumentsProgress(
            folder=self.folder or "", files_total=self.files_total, files_done=self.files_done,
            indexed=self.indexed, unchanged=self.unchanged, skipped=self.skipped, removed=self.removed,
            pages=self.pages, current=self.current, eta_s=round(eta, 1) if eta is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        d = self.progress().to_dict()
        d.pop("event", None)
        d.pop("ts", None)
        return {**d, "trigger": self.trigger, "chunks": self.chunks, "problem": self.problem,
                "seconds": round(time.monotonic() - self.started, 3)}


@dataclass
class _Prepared:
    """A file read and cut up in a worker thread, waiting to be stored."""

    row: FileRow
    records: list[dict[str, Any]]
    stale: list[str]  # record ids of passages the previous version had beyond the new end


def file_id(path: str) -> str:
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()


def record_ids(path: str, start: int, end: int) -> list[str]:
    fid = file_id(path)
    return [f"doc:{fid}:{n}" for n in range(start, end)]


def _when(mtime: float) -> str:
    # The record's time is the file's; the store takes 1970..tomorrow, files can say anything.
    now = time.time()
    return datetime.fromtimestamp(min(max(mtime, 86_400.0), now), UTC).isoformat()


class DocumentIndex:
    def __init__(
        self,
        manifest: Manifest,
        events: EventBus,
        personal: Callable[[], PersonalService],
        max_bytes: Callable[[], int],
    ) -> None:
        self.manifest = manifest
        self.events = events
        self._personal = personal
        self._max_bytes = max_bytes
        self.current: Report | None = None  # the job under way (the status call shows it)
        self.last: dict[str, dict[str, Any]] = {}  # folder → its last scan's report
        self.problems: dict[str, str] = {}  # folder → why it could not be scanned

    @property
    def caller(self) -> Caller:
        from app.kernel.personal.service import Caller

        return Caller(SOURCE, frozenset())

    # -- jobs ---------------------------------------------------------------------------------------
    async def scan(self, entry: FolderEntry, *, force: bool = False) -> Report:
        """Bring one folder's passages in step with the files in it (`force`: read every file
        again, as when the folder's access changed)."""
        root = Path(entry.path)
        report = Report(entry.path, "scan")
        self.current = report
        try:
            if not await asyncio.to_thread(root.is_dir):
                report.problem = f"{root} is missing (an unplugged disk?): its passages are kept until it is back"
                self.problems[entry.path] = report.problem
                return report
            self.problems.pop(entry.path, None)
            known = await asyncio.to_thread(self.manifest.folder, entry.path)
            await self._sync(entry, root, known, report, force=force)
            self.last[entry.path] = report.to_dict()
            return report
        finally:
            self.current = None
            self.events.publish(report.event())

    async def changed(self, entries: list[FolderEntry], paths: set[str]) -> Report:
        """Watched changes: each path indexed again, or (gone) forgotten, with what is under it."""
        report = Report(None, "watch")
        self.current = report
        try:
            for raw in sorted(paths):
                path = Path(raw)
                entry = _folder_of(entries, path)
                if entry is None or _ignored(Path(entry.path), path):
                    continue
                report.folder = report.folder or entry.path
                if await asyncio.to_thread(path.is_dir):
                    known = {r.path: r for r in await asyncio.to_thread(self.manifest.under, raw)}
                    await self._sync(entry, path, known, report)
                elif await asyncio.to_thread(path.is_file):
                    if kind_of(path) is not None:
                        await self._sync_files(entry, [raw], await asyncio.to_thread(self._known, [raw]), report)
                else:
                    for row in await asyncio.to_thread(self.manifest.under, raw):
                        await self._forget(row, report)
            return report
        finally:
            self.current = None
            self.events.publish(report.event())

    async def remove(self, folder: str) -> Report:
        """Forget every passage of a folder the user removed."""
        report = Report(folder, "remove")
        self.current = report
        try:
            rows = list((await asyncio.to_thread(self.manifest.folder, folder)).values())
            report.files_total = len(rows)
            for row in rows:
                await self._forget(row, report)
                report.files_done += 1
            self.last.pop(folder, None)
            self.problems.pop(folder, None)
            return report
        finally:
            self.current = None
            self.events.publish(report.event())

    # -- the work ------------------------------------------------------------------------------------
    def _known(self, paths: list[str]) -> dict[str, FileRow]:
        return {p: row for p in paths if (row := self.manifest.get(p)) is not None}

    async def _sync(
        self, entry: FolderEntry, base: Path, known: dict[str, FileRow], report: Report, *, force: bool = False
    ) -> None:
        files, unreadable = await asyncio.to_thread(_list, base)
        seen = set(files)
        await self._sync_files(entry, list(files), known, report, listed=None if force else files, force=force)
        for path, reason in unreadable.items():  # a folder that cannot be listed: keep what is under it
            seen.add(path)
            await asyncio.to_thread(self.manifest.put, [FileRow(
                path, entry.path, "folder", 0, 0, None, 0, 0, "skipped", "unreadable", reason, time.time())])
        kept = tuple(p.rstrip(os.sep) + os.sep for p in unreadable)
        for path, row in known.items():
            if path not in seen and not path.startswith(kept):
                await self._forget(row, report)

    async def _sync_files(
        self,
        entry: FolderEntry,
        paths: list[str],
        known: dict[str, FileRow],
        report: Report,
        listed: dict[str, tuple[int, int]] | None = None,
        force: bool = False,
    ) -> None:
        report.files_total += len(paths)
        pending: list[_Prepared] = []
        waiting = 0
        last_progress = 0.0
        self.events.publish(report.progress())
        for path in paths:
            report.current = path
            prev = known.get(path)
            stat = listed.get(path) if listed is not None else None
            if (
                stat is not None and prev is not None and (prev.size, prev.mtime_ns) == stat
                and prev.code not in RETRY_CODES
            ):
                report.unchanged += 1  # not opened: a rescan of 10,000 files costs only the stats
            else:
                outcome = await asyncio.to_thread(self._prepare, entry, path, prev, force)
                if outcome == "unchanged":
                    report.unchanged += 1
                elif isinstance(outcome, FileRow):  # skipped; its old passages (if any) go
                    await self._store(pending, report)
                    pending, waiting = [], 0
                    await self._drop(record_ids(path, 0, prev.chunks) if prev else [])
                    await asyncio.to_thread(self.manifest.put, [outcome])
                    report.skipped += 1
                    report.touched(path)
                else:
                    pending.append(outcome)
                    waiting += len(outcome.records)
                    if waiting >= BATCH:
                        await self._store(pending, report)
                        pending, waiting = [], 0
            report.files_done += 1
            now = time.monotonic()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                self.events.publish(report.progress())
        await self._store(pending, report)
        report.current = ""

    def _prepare(
        self, entry: FolderEntry, path: str, prev: FileRow | None, force: bool = False
    ) -> _Prepared | FileRow | str:
        """In a worker thread: read, hash, extract, chunk. Never raises for a bad file."""
        p = Path(path)
        kind = kind_of(p) or "text"
        try:
            data, st = read_file(p, self._max_bytes())
        except Skip as s:
            return self._skip_row(entry, path, kind, s, prev)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        if not force and prev is not None and prev.hash == digest and prev.status == "indexed":
            self.manifest.touch(path, st.st_size, st.st_mtime_ns)
            return "unchanged"
        try:
            extracted = extract(kind, data)
        except Skip as s:
            return self._skip_row(entry, path, kind, s, prev, st.st_size, st.st_mtime_ns, digest)
        except Exception as e:  # an extractor bug or a file no extractor foresaw: skip, never crash
            log.warning("extracting %s failed", path, exc_info=True)
            return self._skip_row(entry, path, kind, Skip(f"could not be read ({why(e)})", "broken"), prev,
                                  st.st_size, st.st_mtime_ns, digest)
        del data
        notes = list(extracted.notes)
        records: list[dict[str, Any]] = []
        fid = file_id(path)
        root = Path(entry.path)
        shown = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
        when = _when(st.st_mtime)
        for n, chunk in enumerate(chunking.chunks(extracted)):
            if n >= chunking.MAX_CHUNKS:
                notes.append(f"only the first {chunking.MAX_CHUNKS:,} passages are indexed")
                break
            where = chunking.place(extracted.unit, chunk.start, chunk.end)
            label = f"{shown} · {where}" + (f" · {chunk.heading}" if chunk.heading else "")
            records.append({
                "id": f"doc:{fid}:{n}",
                "timestamp": when,
                "highlight": label[:500],
                "note": chunk.text,
                "address": chunking.address(p, extracted.unit, chunk.start, chunk.end),
                "tag": ["document", kind],
                "access": entry.access,
                "metadata": {
                    "importer": "documents", "file": path, "folder": entry.path, "kind": kind,
                    "unit": extracted.unit, "start": chunk.start, "end": chunk.end,
                },
            })
        row = FileRow(path, entry.path, kind, st.st_size, st.st_mtime_ns, digest, len(records), extracted.pages,
                      "indexed", None, "; ".join(notes) or None, time.time())
        stale = record_ids(path, len(records), prev.chunks) if prev is not None and prev.chunks > len(records) else []
        return _Prepared(row, records, stale)

    def _skip_row(self, entry: FolderEntry, path: str, kind: str, s: Skip, prev: FileRow | None,
                  size: int | None = None, mtime_ns: int | None = None, digest: str | None = None) -> FileRow:
        if size is None:
            try:
                st = os.stat(path)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime_ns = 0, 0
        return FileRow(path, entry.path, kind, size, mtime_ns or 0, digest, 0, 0, "skipped", s.code, s.reason,
                       time.time())

    async def _store(self, pending: list[_Prepared], report: Report) -> None:
        """Store the passages of these files; only then are they indexed in the manifest."""
        if not pending:
            return
        personal = self._personal()
        records = [r for p in pending for r in p.records]
        try:
            for i in range(0, len(records), BATCH):
                await personal.add(records[i : i + BATCH], self.caller)
            stored = pending
        except ByenatosError:
            stored = []
            for prep in pending:  # find the file the store refused; the others go in
                try:
                    for i in range(0, len(prep.records), BATCH):
                        await personal.add(prep.records[i : i + BATCH], self.caller)
                    stored.append(prep)
                except ByenatosError as e:
                    log.warning("storing the passages of %s failed: %s", prep.row.path, e)
                    row = prep.row
                    await asyncio.to_thread(self.manifest.put, [FileRow(
                        row.path, row.folder, row.kind, row.size, row.mtime_ns, None, 0, 0, "skipped", "store",
                        f"its passages could not be stored: {e}", time.time())])
                    report.skipped += 1
        for prep in stored:
            await self._drop(prep.stale)
            report.indexed += 1
            report.pages += prep.row.pages
            report.chunks += prep.row.chunks
            report.touched(prep.row.path)
        await asyncio.to_thread(self.manifest.put, [p.row for p in stored])

    async def _forget(self, row: FileRow, report: Report) -> None:
        await self._drop(record_ids(row.path, 0, row.chunks))
        await asyncio.to_thread(self.manifest.delete, [row.path])
        if row.kind != "folder":
            report.removed += 1
            report.touched(row.path)

    async def _drop(self, ids: list[str]) -> None:
        if not ids:
            return
        personal = self._personal()
        for rid in ids:
            try:
                await personal.delete(rid, self.caller)
            except NotFoundError:  # the user forgot it already
                pass


def _folder_of(entries: list[FolderEntry], path: Path) -> FolderEntry | None:
    for entry in entries:
        root = Path(entry.path)
        if path == root or path.is_relative_to(root):
            return entry
    return None


def _ignored(root: Path, path: Path) -> bool:
    """Inside a hidden or tool folder, or a hidden file: not the user's documents."""
    if path == root:
        return False
    parts = path.relative_to(root).parts
    return any(skipped_dir(p) for p in parts[:-1]) or parts[-1].startswith(".")


def _list(base: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Every document under `base` → (size, mtime_ns); and the folders that could not be read.
    Symbolic links to folders are not followed (a link loop, or a link to the whole disk)."""
    files: dict[str, tuple[int, int]] = {}
    unreadable: dict[str, str] = {}
    stack = [base]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as e:
            unreadable[str(folder)] = f"this folder cannot be read: {e.strerror or e}"
            continue
        for de in entries:
            try:
                if de.is_dir(follow_symlinks=False):
                    if not skipped_dir(de.name):
                        stack.append(Path(de.path))
                    continue
                if kind_of(Path(de.name)) is None or not de.is_file():
                    continue
                st = de.stat()
            except OSError:
                continue  # vanished meanwhile, or a dangling link
            files[de.path] = (st.st_size, st.st_mtime_ns)
    return dict(sorted(files.items())), unreadable
