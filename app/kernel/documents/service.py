"""DocumentsService: what the kernel holds for the user's documents.

Folders in (`add_folder`, `remove_folder`), the index kept in step (a scan of every folder when
it begins, then the watcher), the state for a status call (`status`: the job under way with its
progress, per-folder totals, the files skipped and why), and search by meaning (`search`), which
the gateway, the CLI and agents' file tools call. Jobs run one at a time on one worker task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.kernel.documents.folders import Access, FolderEntry, FolderRegistry, normalize
from app.kernel.documents.indexer import SOURCE, DocumentIndex, Report
from app.kernel.documents.manifest import Manifest
from app.kernel.errors import BadRequestError, ByenatosError

if TYPE_CHECKING:
    from app.kernel.config import Paths
    from app.kernel.documents.watcher import FolderWatcher
    from app.kernel.events import EventBus
    from app.kernel.personal.service import PersonalService

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_QUERY = 2_000
MAX_K = 50


class DocumentsService:
    def __init__(
        self, paths: Paths, events: EventBus, personal: Callable[[], PersonalService], *, watch_added: bool = False
    ) -> None:
        self.paths = paths
        self.events = events
        self.registry = FolderRegistry(paths)
        self._personal = personal
        self._index: DocumentIndex | None = None
        self._manifest: Manifest | None = None
        self._jobs: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: FolderWatcher | None = None
        self._watching = False
        # A folder added while the index was not begun starts the watcher (the kernel that serves
        # this home: a daemon started before any folder was configured).
        self._watch_added = watch_added
        self._changes: set[str] = set()
        self._changes_queued = False
        self._scans: dict[str, asyncio.Future[Report]] = {}  # folder → its scan, queued, not begun
        self._max_bytes = 64 * 2**20

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.paths.data_dir / "documents-index.sqlite3"

    @property
    def index(self) -> DocumentIndex:
        if self._index is None:
            self._manifest = Manifest(self.manifest_path)
            self._index = DocumentIndex(self._manifest, self.events, self._personal, lambda: self._max_bytes)
        return self._index

    def _ensure_worker(self) -> None:
        if self._jobs is not None:
            return
        self._jobs = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._work(self._jobs), name="documents-index"),
            asyncio.create_task(self._on_delete_all(), name="documents-delete-all"),
        ]

    def begin(self) -> None:
        """Index every folder now (what changed while ByenatOS was not running) and watch them.
        Needs a running loop; beginning twice does nothing."""
        self._ensure_worker()
        if self._watching:
            return
        config = self.registry.load()
        self._max_bytes = int(config.max_file_mb * 2**20)
        self._watching = config.watch
        for entry in config.folders:
            self._queue_scan(entry)
        self._restart_watcher()

    async def stop(self) -> None:
        self._watching = False
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._jobs is not None:
            while not self._jobs.empty():
                _, fut = self._jobs.get_nowait()
                if not fut.done():
                    fut.set_exception(ByenatosError("ByenatOS stopped before the document index did this"))
            self._jobs = None
        self._changes, self._changes_queued = set(), False
        self._scans.clear()
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None
            self._index = None

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.running

    def _restart_watcher(self) -> None:
        """Watch exactly the configured folders (after one was added or removed)."""
        if not self._watching:
            return
        from app.kernel.documents.watcher import FolderWatcher

        old, self._watcher = self._watcher, None
        if old is not None:
            # Stopping joins its thread (within one 50 ms step): off the loop.
            asyncio.get_running_loop().create_task(old.stop())
        folders = [Path(e.path) for e in self.registry.folders()]
        if not folders:
            return
        watcher = FolderWatcher(folders, self._on_changes)
        try:
            watcher.start()
        except Exception as e:  # too many inotify watches, a folder gone meanwhile…
            watcher.error = f"the file watcher could not start: {e}"
            log.warning("%s", watcher.error)
        self._watcher = watcher

    # -- the worker --------------------------------------------------------------------------------
    def _enqueue(self, job: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        self._ensure_worker()
        assert self._jobs is not None
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        self._jobs.put_nowait((job, fut))
        return fut

    async def _work(self, jobs: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]]) -> None:
        while True:
            job, fut = await jobs.get()
            if fut.done():  # its caller gave up waiting before it began
                continue
            try:
                result = await job()
            except asyncio.CancelledError:
                if not fut.done():
                    fut.cancel()
                raise
            except Exception as e:
                if not isinstance(e, ByenatosError):
                    log.exception("a document index job failed")
                if not fut.done():
                    fut.set_exception(e)
                continue
            if not fut.done():
                fut.set_result(result)

    def _queue_scan(self, entry: FolderEntry, *, force: bool = False) -> asyncio.Future[Report]:
        """A scan of this folder; one already waiting to begin serves (it will see the same files)."""
        waiting = self._scans.get(entry.path)
        if waiting is not None and not force and not waiting.done():
            return waiting

        async def job() -> Report:
            if self._scans.get(entry.path) is fut:
                del self._scans[entry.path]
            return await self.index.scan(entry, force=force)

        fut = self._enqueue(job)
        self._scans[entry.path] = fut
        return fut

    def _on_changes(self, paths: set[str]) -> None:
        """From the watcher: changes gather until the worker gets to them (one job per burst)."""
        self._changes |= paths
        if not self._changes_queued:
            self._changes_queued = True
            self._enqueue(self._apply_changes)

    async def _apply_changes(self) -> Report:
        paths, self._changes = self._changes, set()
        self._changes_queued = False
        return await self.index.changed(self.registry.folders(), paths)

    async def _on_delete_all(self) -> None:
        """The user deleted all personal data: the documents' passages went with it. Forget the
        folders too, or the index would put every passage straight back."""
        from app.kernel.personal.service import PersonalDataChanged

        sub = self.events.subscribe(
            accepts=lambda e: isinstance(e, PersonalDataChanged) and e.action == "delete_all"
        )
        async for _ in sub:
            await self._submit(self._forget_everything)

    async def _forget_everything(self) -> None:
        await asyncio.to_thread(self.registry.clear)
        await asyncio.to_thread(self.index.manifest.clear)
        self.index.last.clear()
        self.index.problems.clear()
        self._restart_watcher()

    async def _submit(self, job: Callable[[], Awaitable[T]]) -> T:
        return await self._enqueue(job)

    # -- folders -----------------------------------------------------------------------------------
    async def add_folder(self, path: str | Path, access: Access = "private", *, wait: bool = False) -> dict[str, Any]:
        """Add a folder and index it (in the background; `wait`: until it is indexed)."""
        if access not in ("private", "shared", "public"):
            raise BadRequestError("access must be private, shared or public")
        entry, status = await asyncio.to_thread(self.registry.add, path, access)
        config = self.registry.load()
        self._max_bytes = int(config.max_file_mb * 2**20)
        restart = status == "added"
        if self._watch_added and not self._watching and config.watch:
            self._watching = restart = True
        # A new access is part of every passage: read the files again to store it.
        scan = self._queue_scan(entry, force=status == "updated")
        if restart:
            self._restart_watcher()
        out: dict[str, Any] = {"folder": entry.path, "access": entry.access, "status": status}
        if wait:
            out["report"] = (await scan).to_dict()
        return out

    async def remove_folder(self, path: str | Path) -> dict[str, Any]:
        """Stop indexing a folder and forget its passages (the files themselves are untouched)."""
        entry = await asyncio.to_thread(self.registry.remove, path)
        self._restart_watcher()
        report = await self._submit(lambda: self.index.remove(entry.path))
        return {"folder": entry.path, "status": "removed", "forgotten_files": report.removed}

    async def scan(self, folder: str | Path | None = None) -> list[dict[str, Any]]:
        """Index again now (what changed while no watcher ran); one folder or all."""
        entries = self.registry.folders()
        if folder is not None:
            want = normalize(folder)
            entries = [e for e in entries if Path(e.path) == want]
            if not entries:
                raise BadRequestError(f"{want} is not an indexed folder")
        futures = [self._queue_scan(e) for e in entries]
        return [(await f).to_dict() for f in futures]

    def folders(self) -> list[dict[str, Any]]:
        totals = self.index.manifest.totals()
        out = []
        for entry in self.registry.folders():
            t = totals.get(entry.path, {"files": 0, "chunks": 0, "pages": 0, "skipped": 0})
            out.append(_folder_json(entry) | t | {"problem": self.index.problems.get(entry.path)})
        return out

    # -- status ------------------------------------------------------------------------------------
    async def status(self, *, skipped_limit: int = 200) -> dict[str, Any]:
        index = self.index
        folders = await asyncio.to_thread(self.folders)
        rows, skipped_total = await asyncio.to_thread(index.manifest.skipped, skipped_limit)
        current = index.current
        watcher = self._watcher
        return {
            "state": "indexing" if current is not None else "idle",
            "current": current.to_dict() if current is not None else None,
            "queued": self._jobs.qsize() if self._jobs is not None else 0,
            "watching": self.watching,
            "watch_problem": watcher.error if watcher is not None else None,
            "folders": folders,
            "files": sum(f["files"] for f in folders),
            "chunks": sum(f["chunks"] for f in folders),
            "pages": sum(f["pages"] for f in folders),
            "skipped_total": skipped_total,
            "skipped": [
                {"path": r.path, "kind": r.kind, "code": r.code or "partial", "reason": r.reason,
                 "indexed": r.status == "indexed"}
                for r in rows
            ],
            "last_scans": dict(index.last),
            "max_file_mb": self._max_bytes / 2**20,
        }

    # -- search ------------------------------------------------------------------------------------
    async def search(self, query: str, k: int = 8) -> list[dict[str, Any]]:
        """The passages of the user's documents nearest in meaning to `query`, best first, each
        citing its file and page or lines. What agents' file search calls."""
        from app.kernel.personal.service import Caller

        query = (query or "").strip()
        if not query:
            raise BadRequestError("give some words to search for")
        if len(query) > MAX_QUERY:
            raise BadRequestError(f"a search is at most {MAX_QUERY} characters")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise BadRequestError(f"k must be a whole number from 1 to {MAX_K}")
        found = await self._personal().recall(Caller(SOURCE, frozenset()), query, k=k)
        return [hit(r) for r in found if (r.get("metadata") or {}).get("importer") == "documents"]


def hit(rec: dict[str, Any]) -> dict[str, Any]:
    md = rec.get("metadata") or {}
    unit, start, end = md.get("unit"), md.get("start"), md.get("end")
    return {
        "file": md.get("file"),
        "folder": md.get("folder"),
        "kind": md.get("kind"),
        "page": start if unit == "page" else None,
        "lines": [start, end] if unit == "line" else None,
        "paragraphs": [start, end] if unit == "para" else None,
        "address": rec.get("address"),
        "citation": rec.get("highlight"),
        "text": rec.get("note"),
        "score": round(float(rec.get("relevance") or 0.0), 4),
        "id": rec.get("id"),
    }


def _folder_json(entry: FolderEntry) -> dict[str, Any]:
    return {"path": entry.path, "access": entry.access, "added_at": entry.added_at}


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """A job nobody awaits (a background scan) must not warn "exception never retrieved"."""
    if not fut.cancelled():
        fut.exception()
