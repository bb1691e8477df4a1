"""PersonalService: the one object the kernel holds for personalization.

It owns the encrypted personal store, the vector index, the embedding model, the PSP builder
and three background tasks: vector catch-up (embeds queued records, resumes after a
restart), model enhancement (only when the user allows it) and a flusher that writes the
audit trail and access counts in batches, off the request path.

Who may see what is decided here, from a `Caller` (app id + scopes): an app sees its own
records, other apps' shared/public ones only with `hinata:read`; `admin` (the user, through
the CLI or UI) sees everything. Every read is audited.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from app.kernel.errors import BadRequestError, ByenatosError, NotFoundError, PermissionDeniedError
from app.kernel.events import Event
from app.kernel.personal import enhance as enh
from app.kernel.personal.embed import LazyEmbedder
from app.kernel.personal.hinata import HinataValidationError, validate_batch
from app.kernel.personal.importers import ImportReport, file_hash, jsonl_lines, markdown_record, scan_markdown
from app.kernel.personal.psp import Psp, PspBuilder, budget_for, item_line
from app.kernel.personal.store import PersonalStore, Visibility
from app.kernel.personal.vectors import VectorIndex

if TYPE_CHECKING:
    from app.kernel.config import Paths
    from app.kernel.events import EventBus
    from app.kernel.security.secrets import SecretStore

log = logging.getLogger(__name__)

USER_SOURCE = "user"  # `source` of what the user adds through the CLI/UI
MAX_RULE = 1_000
DEFAULT_SETTINGS: dict[str, Any] = {
    "paused": False,  # global pause: no PSP is injected anywhere
    "enhance_with_model": False,  # send records to the model in the socket for enhancement
    "enhance_model": "default",
    "psp_max_tokens": 2048,
    # "local" (all-MiniLM-L6-v2 on this machine), "multilingual" (multilingual-e5-small on this
    # machine: Chinese and other languages) or a model id/name whose provider embeds
    "embedding_model": "local",
}
MAX_RANKED = 1000  # a ranked search pages through at most this many hits
MIN_SEARCH_RELEVANCE = 0.15  # a vector-only hit below this is a distant neighbour, not a result
VECTOR_BATCH = 256  # chromadb's per-call cost is high: fewer, larger calls
FLUSH_EVERY = 1.0
OPEN_DELAY_S = 2.0  # the store opens this long after start-up unless something needs it sooner


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: an app id (None = the local user) and its scopes."""

    app: str | None
    scopes: frozenset[str] = frozenset()

    @classmethod
    def user(cls) -> Caller:
        return cls(None, frozenset({"admin"}))

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def source(self) -> str:
        return self.app or USER_SOURCE

    def visibility(self) -> Visibility:
        return Visibility(app=self.source, shared="hinata:read" in self.scopes, admin=self.admin)


@dataclass(frozen=True, slots=True)
class PersonalDataChanged(Event):
    """Records, rules or controls changed (the UI refreshes its personalization view)."""

    action: str
    count: int = 0


class PersonalService:
    def __init__(
        self,
        paths: Paths,
        secrets: SecretStore,
        events: EventBus,
        *,
        model_dir: Path | None = None,
        chat: Any = None,
        embed: Any = None,
    ) -> None:
        self.paths = paths
        self.secrets = secrets
        self.events = events
        self.embedder = LazyEmbedder(model_dir)
        self._model_dir = model_dir
        self._chat = chat  # async (ChatRequest) -> ChatResponse, for model enhancement
        self._embed = embed  # async (texts, model) -> EmbeddingResult, for a provider's embeddings
        self.store: PersonalStore | None = None
        self.vectors: VectorIndex | None = None
        self.builder: PspBuilder | None = None
        self._settings: dict[str, Any] = dict(DEFAULT_SETTINGS)
        self._apps: dict[str, bool] = {}
        self._audit: list[tuple[float, str | None, str, dict[str, Any]]] = []
        self._uses: Counter[str] = Counter()  # record id → PSPs it went into
        self._tasks: list[asyncio.Task[None]] = []
        self._vector_wake = asyncio.Event()
        self._enhance_wake = asyncio.Event()
        self._vectors_idle = asyncio.Event()
        self.vector_error: str | None = None
        self._open_task: asyncio.Task[PersonalStore] | None = None
        self._open_later: asyncio.TimerHandle | None = None
        self._running = False
        self._flush_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.paths.data_dir / "personal.sqlite3"

    @property
    def vector_dir(self) -> Path:
        return self.paths.data_dir / "personal-vectors"

    def _use_embedding_model(self, value: str) -> None:
        """Switch encoders; the vector worker re-embeds everything (the model marker changes)."""
        if value in ("local", "multilingual") or self._embed is None:
            self.embedder.provider = None
            if self._model_dir is None:  # a model folder given to the service (tests) stays
                from app.kernel.personal.embed import preferred_model_dir

                self.embedder.use_dir(None if value == "local" else preferred_model_dir(value))
        else:
            from app.kernel.personal.embed import ProviderEncoder

            self.embedder.provider = ProviderEncoder(value, self._embed, asyncio.get_running_loop())
        self.vector_error = None
        if self.vectors is not None and self.vectors.is_open:
            self.vectors.close()  # reopened (and checked against the new model) by the worker
            self.vectors = VectorIndex(self.vector_dir)
            if self.builder is not None:
                self.builder.vectors = self.vectors
        if self.store is not None:
            self.want_vectors()

    async def start(self) -> PersonalService:
        self.begin()
        return self

    def begin(self) -> None:
        """Returns at once: the encrypted store opens in the background (the keyring lookup and
        the key check take up to a second), and vectors + the model load only when there is
        vector work or a PSP to build, so an idle daemon stays small. Needs a running loop.
        Beginning a running service does nothing; a stopped one begins again (on this loop)."""
        if self._running:
            return
        self._load_controls()
        if self.setting("embedding_model") == "multilingual" or (
            self.setting("embedding_model") != "local" and self._embed is not None
        ):
            self._use_embedding_model(self.setting("embedding_model"))
        # Opening costs CPU (cryptography, SQLCipher's key derivation) that would compete with
        # the gateway's first requests, so it waits until start-up has settled — or until
        # something needs the store, whichever comes first.
        self._running = True
        self._open_later = asyncio.get_running_loop().call_later(OPEN_DELAY_S, self._begin_open)

    def _begin_open(self) -> None:
        if self._open_later is not None:
            self._open_later.cancel()
            self._open_later = None
        if self._open_task is None and self._running:
            self._open_task = asyncio.create_task(self._open(), name="personal-open")

    async def _open(self) -> PersonalStore:
        store = await asyncio.to_thread(PersonalStore.open, self.db_path, self.secrets)
        self.store = store
        self.vectors = VectorIndex(self.vector_dir)
        self.builder = PspBuilder(store, self.embedder, self.vectors)
        self._tasks = [
            asyncio.create_task(self._vector_worker(), name="personal-vectors"),
            asyncio.create_task(self._enhance_worker(), name="personal-enhance"),
            asyncio.create_task(self._flusher(), name="personal-flush"),
        ]
        if await asyncio.to_thread(store.vector_backlog):  # a restart resumes the catch-up
            self._vector_wake.set()
        else:
            self._vectors_idle.set()
        self._enhance_wake.set()
        return store

    async def ready(self) -> PersonalStore:
        """The open store (waits for the background open; raises what it raised)."""
        if self.store is not None:
            return self.store
        if self._open_task is None:
            if not self._running:
                raise ByenatosError("the personal store is not running (the kernel is not started)")
            self._begin_open()
        assert self._open_task is not None
        return await asyncio.shield(self._open_task)

    async def stop(self) -> None:
        self._running = False
        if self._open_later is not None:
            self._open_later.cancel()
            self._open_later = None
        if self._open_task is not None and not self._open_task.done():
            await asyncio.gather(self._open_task, return_exceptions=True)
        self._open_task = None
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Fresh wake-ups for a next begin(): this run's workers are gone, and what they had
        # signalled ("vectors idle") says nothing about the next run.
        self._vector_wake, self._enhance_wake, self._vectors_idle = (
            asyncio.Event(),
            asyncio.Event(),
            asyncio.Event(),
        )
        if self.store is not None:
            await asyncio.to_thread(self._flush)
            self.store.close()
            self.store = None
        if self.vectors is not None:
            self.vectors.close()
            self.vectors = None
        if self.builder is not None:
            self.builder.close()
            self.builder = None

    # -- controls (kernel database: not personal data) -----------------------------------------
    def _load_controls(self) -> None:
        from app.kernel.store.personal_tables import PersonalSettingRow, PspAppRow

        try:
            for row in PersonalSettingRow.select():
                self._settings[row.key] = row.value
            self._apps = {r.app_id: r.inject for r in PspAppRow.select()}
        except Exception as e:  # the kernel database is not open (a bare service in a script)
            log.debug("personal controls not loaded: %s", e)

    def setting(self, key: str) -> Any:
        return self._settings.get(key, DEFAULT_SETTINGS.get(key))

    def set_setting(self, key: str, value: Any) -> None:
        from app.kernel.store.personal_tables import PersonalSettingRow

        if key not in DEFAULT_SETTINGS:
            raise BadRequestError(
                f"unknown personalization setting {key!r}; known: {sorted(DEFAULT_SETTINGS)}"
            )
        default = DEFAULT_SETTINGS[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise BadRequestError(f"{key} must be true or false")
        if key == "psp_max_tokens" and (
            not isinstance(value, int) or isinstance(value, bool) or not 64 <= value <= 32_000
        ):
            raise BadRequestError("psp_max_tokens must be a whole number from 64 to 32000")
        if key in ("enhance_model", "embedding_model") and (not isinstance(value, str) or not value.strip()):
            raise BadRequestError(f"{key} must be a model id, name or alias")
        if key == "embedding_model" and value not in ("local", "multilingual") and self._embed is None:
            raise BadRequestError(
                "embedding_model: this kernel has no provider embeddings; use 'local' or 'multilingual'"
            )
        PersonalSettingRow.insert(key=key, value=value).on_conflict_replace().execute()
        self._settings[key] = value
        self.events.publish(PersonalDataChanged(action=f"setting:{key}"))
        if key == "enhance_with_model" and value:
            self._enhance_wake.set()
        if key == "embedding_model":
            self._use_embedding_model(value)

    @property
    def paused(self) -> bool:
        return bool(self.setting("paused"))

    def set_paused(self, paused: bool) -> None:
        self.set_setting("paused", paused)

    def injection(self, app_id: str) -> bool:
        return self._apps.get(app_id, False)

    def set_injection(self, app_id: str, inject: bool) -> None:
        from app.kernel.store.personal_tables import PspAppRow

        if not app_id or len(app_id) > 128:
            raise BadRequestError("app id must be 1-128 characters")
        PspAppRow.insert(app_id=app_id, inject=inject, updated_at=time.time()).on_conflict_replace().execute()
        self._apps[app_id] = inject
        self.events.publish(PersonalDataChanged(action="injection"))

    def apps(self) -> dict[str, bool]:
        return dict(self._apps)

    # -- audit ------------------------------------------------------------------------------------
    def audit(self, caller: Caller, action: str, **detail: Any) -> None:
        """Buffered; written within a second by the flusher (and at stop)."""
        self._audit.append((time.time(), caller.app or USER_SOURCE, action, detail))

    def _flush(self) -> None:
        store = self.store
        if store is None:
            return
        with self._flush_lock:  # a second flush waits for one in progress: "flushed" means written
            audit, self._audit = self._audit, []
            uses, self._uses = self._uses, Counter()
            if audit:
                store.audit(audit)
            if uses:
                store.note_uses(dict(uses), time.time())

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)  # a periodic batch writer, not a wait for a result
            if self._audit or self._uses:
                try:
                    await asyncio.to_thread(self._flush)
                except Exception:
                    log.exception("writing the personal audit failed")

    async def audit_log(self, limit: int = 100, app: str | None = None) -> list[dict[str, Any]]:
        await asyncio.to_thread(self._flush)
        return await asyncio.to_thread((await self.ready()).audit_log, limit, app)

    # -- records -----------------------------------------------------------------------------------
    async def add(self, payload: Any, caller: Caller) -> list[dict[str, str]]:
        """Validate, enhance and store one record or a batch (<=100). Returns once durable."""
        store = await self.ready()
        queue_model = bool(self.setting("enhance_with_model"))
        # All of it in a worker thread: validation and keyword extraction cost ~0.3 ms a record,
        # which the event loop (serving chat requests meanwhile) should not pay.
        results = await asyncio.to_thread(self._store_batch, store, payload, caller, queue_model)
        self._written(len(results))
        return [{"id": rid, "status": status} for rid, status in results]

    def _store_batch(
        self,
        store: PersonalStore,
        payload: Any,
        caller: Caller,
        queue_model: bool,
    ) -> list[tuple[str, str]]:
        records = validate_batch(payload, source=caller.source)
        enhancements = {r.id: enh.keywords(r.highlight, r.note, r.tag, r.metadata) for r in records}
        tokens = {}
        for r in records:
            line = item_line(
                {
                    "highlight": r.highlight,
                    "note": r.note,
                    "tags": r.tag,
                    "timestamp": r.timestamp.isoformat() if r.timestamp else "",
                }
            )
            tokens[r.id] = self.embedder.count_tokens(line)
        return store.upsert(records, tokens, enhancements, admin=caller.admin, queue_model=queue_model)

    def _written(self, n: int) -> None:
        self._vectors_idle.clear()
        self._vector_wake.set()
        if self.setting("enhance_with_model"):
            self._enhance_wake.set()
        self.events.publish(PersonalDataChanged(action="records", count=n))

    async def get(self, record_id: str, caller: Caller) -> dict[str, Any]:
        store = await self.ready()
        rec = await asyncio.to_thread(store.get, record_id)
        if rec is None or not caller.visibility().allows(rec["source"], rec["access"]):
            # Not "forbidden": whether another app's private record exists is itself private.
            raise NotFoundError(f"no record {record_id!r}")
        rec["enhancement"] = await asyncio.to_thread(store.enhancement, rec["key"])
        self.audit(caller, "hinata.get", ids=[record_id])
        return public_record(rec)

    async def delete(self, record_id: str, caller: Caller) -> None:
        store = await self.ready()
        rec = await asyncio.to_thread(store.get, record_id)
        if rec is None or not caller.visibility().allows(rec["source"], rec["access"]):
            raise NotFoundError(f"no record {record_id!r}")
        if not (caller.admin or rec["source"] == caller.source):
            raise PermissionDeniedError(
                f"record {record_id!r} belongs to another app; only it or the user may forget it"
            )
        await asyncio.to_thread(store.delete, record_id, caller.visibility())
        self.audit(caller, "hinata.delete", ids=[record_id])
        self._written(1)

    async def search(
        self,
        caller: Caller,
        *,
        text: str | None = None,
        phrase: str | None = None,
        tag: str | None = None,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        access: str | None = None,
        limit: int = 20,
        offset: int = 0,
        mode: str = "hybrid",
    ) -> dict[str, Any]:
        """Records within every filter. With `text` (or `phrase`), ranked best first by the
        PSP's hybrid retrieval — BM25 on any word fused with vectors, `"quoted phrases"` and
        `phrase` required verbatim, a time the text names ("last week") taken as a time
        filter — each hit with its score, the words that matched and its best passage.
        Without text, newest first."""
        store = await self.ready()
        if not 1 <= limit <= 200 or offset < 0:
            raise BadRequestError("limit must be 1-200 and offset ≥ 0")
        if access is not None and access not in ("private", "shared", "public"):
            raise BadRequestError("access must be private, shared or public")
        if mode not in ("hybrid", "fts", "vector"):
            raise BadRequestError("mode must be hybrid, fts or vector")
        filters = {"tag": tag, "source": source, "since": since, "until": until, "access": access}
        shown = {k: v for k, v in {**filters, "text": text, "phrase": phrase}.items() if v}
        if not (text and text.strip()) and not (phrase and phrase.strip()):
            rows, total = await asyncio.to_thread(
                store.search, caller.visibility(), limit=limit, offset=offset, **filters
            )
            self.audit(caller, "hinata.search", returned=len(rows), filters=shown)
            nxt = offset + len(rows) if offset + len(rows) < total else None
            return {
                "data": [public_record(r) for r in rows],
                "total": total,
                "offset": offset,
                "next_offset": nxt,
            }
        if self.vectors is not None and not self.vectors.is_open and mode != "fts":
            self.want_vectors()
        result = await asyncio.to_thread(
            self._ranked_search, store, caller.visibility(), text or "", phrase, filters, limit, offset, mode
        )
        self.audit(
            caller,
            "hinata.search",
            returned=len(result["data"]),
            records=[r["id"] for r in result["data"]],
            filters=shown,
        )
        return result

    def _ranked_search(
        self,
        store: PersonalStore,
        vis: Visibility,
        text: str,
        phrase: str | None,
        filters: dict[str, Any],
        limit: int,
        offset: int,
        mode: str,
    ) -> dict[str, Any]:
        from app.kernel.personal import retrieval, timeq
        from app.kernel.personal.store import Filters
        from app.kernel.personal.textindex import Query, best_passage, matched_words

        when = timeq.resolve(text)
        if when is not None:  # "last week" is a filter here; the other words still rank
            text = when.rest
            since = filters["since"]
            until = filters["until"]
            filters = {
                **filters,
                "since": when.since if since is None else max(since, when.since),
                "until": when.until - 1e-3 if until is None else min(until, when.until - 1e-3),
            }
        query = Query.parse(text, phrase)
        flt = Filters(**filters)
        extra: dict[str, Any] = {"retrieval": "fts-only"}
        if when is not None:
            extra["time_range"] = when.to_dict()
        if not _has_content(query):  # only a time ("yesterday"): that period, newest first
            rows, total = store.search(vis, limit=limit, offset=offset, **filters)
            nxt = offset + len(rows) if offset + len(rows) < total else None
            data = [
                {**public_record(r), "score": 1.0, "matched": [], "passage": _passage(r, query)} for r in rows
            ]
            return {"data": data, "total": total, "offset": offset, "next_offset": nxt, **extra}
        k = min(MAX_RANKED, max(100, offset + limit))
        fts = store.fts_ranked(query, vis, k, flt) if mode != "vector" else []
        qvec = None
        if (
            mode != "fts" and not query.phrases and self.builder is not None
        ):  # a phrase is exact: full text only
            qvec = self.builder.embed_query(" ".join(query.words) if when is not None else text)
        if qvec is not None:
            extra["retrieval"] = "hybrid" if mode == "hybrid" else "vector"
        hits = retrieval.search(
            store,
            self.vectors if qvec is not None else None,
            qvec,
            query,
            vis,
            k,
            "fts" if query.phrases else mode,  # type: ignore[arg-type]
            fts_hits=fts,
            filters=flt,
            reranker=self.reranker() if offset < retrieval.RERANK_TOP else None,
            rerank_text=lambda keys: _rerank_texts(store, keys),
            calibration=self.embedder.calibration(),
        )
        matched = {key for key, _ in fts}
        # Every full-text match counts; a vector-only neighbour only when it is close enough.
        hits = [(key, rel) for key, rel in hits if key in matched or rel >= MIN_SEARCH_RELEVANCE]
        page = hits[offset : offset + limit]
        rows = store.by_keys([key for key, _ in page])
        data = []
        for key, rel in page:
            rec = rows.get(key)
            if rec is None:
                continue
            body = "\n".join(p for p in (rec["highlight"], rec["note"]) if p)
            data.append(
                {
                    **public_record(rec),
                    "score": rel,
                    "matched": matched_words(query, body + " " + " ".join(rec["tags"])),
                    "passage": best_passage(query, body),
                }
            )
        total = len(hits)
        nxt = offset + len(page) if offset + len(page) < total else None
        return {"data": data, "total": total, "offset": offset, "next_offset": nxt, **extra}

    def reranker(self) -> Any:
        """The reranking stage's model, loaded on first use; None when it is not installed."""
        return self.embedder.reranker()

    async def recall(self, caller: Caller, query: str, *, k: int = 8) -> list[dict[str, Any]]:
        """The records most relevant to `query` that `caller` may see, best first: the PSP's
        hybrid retrieval (BM25 on any word fused with vectors), each with its relevance 0-1.
        What agents' memory search uses."""
        if not 1 <= k <= 50:
            raise BadRequestError("k must be 1-50")
        store = await self.ready()
        assert self.builder is not None
        if self.vectors is not None and not self.vectors.is_open:
            self.want_vectors()
        vis = caller.visibility()

        def work() -> list[dict[str, Any]]:
            from app.kernel.personal import retrieval, timeq

            when = timeq.resolve(query)
            qvec = self.builder.embed_query(query) if self.builder is not None else None
            hits = retrieval.search(
                store,
                self.vectors,
                qvec,
                when.rest if when is not None else query,
                vis,
                k,
                time_range=when,
                reranker=self.reranker(),
                rerank_text=lambda keys: _rerank_texts(store, keys),
                calibration=self.embedder.calibration(),
            )
            rows = store.by_keys([key for key, _ in hits])
            return [{**public_record(rows[key]), "relevance": rel} for key, rel in hits if key in rows]

        found = await asyncio.to_thread(work)
        self.audit(caller, "hinata.recall", returned=len(found), records=[r["id"] for r in found])
        return found

    async def import_jsonl(self, text: str, caller: Caller) -> ImportReport:
        report = ImportReport()
        batch: list[tuple[int, Any]] = []
        for n, item in jsonl_lines(text):
            if isinstance(item, Exception):
                report.errors.append(f"line {n}: {item}")
                continue
            if isinstance(item, dict) and item.get("kind") == "core_rule":
                if caller.admin and isinstance(item.get("text"), str):
                    await self.add_rule(item["text"], bool(item.get("pinned")), caller)
                    report.created += 1
                else:
                    report.errors.append(f"line {n}: Core rules can be imported only by the user")
                continue
            if isinstance(item, dict):
                item = {k: v for k, v in item.items() if k != "enhancement"}  # our own export's extra field
            batch.append((n, item))
            if len(batch) == 100:
                await self._import_batch(batch, caller, report)
                batch = []
        if batch:
            await self._import_batch(batch, caller, report)
        self.audit(
            caller,
            "hinata.import",
            kind="jsonl",
            **{k: v for k, v in report.to_dict().items() if k != "errors"},
        )
        return report

    async def _import_batch(self, batch: list[tuple[int, Any]], caller: Caller, report: ImportReport) -> None:
        """A bad line is reported with its number; the good ones around it are still imported."""
        good: list[Any] = []
        for n, item in batch:
            try:
                validate_batch(
                    [item],
                    source=caller.source
                    if not caller.admin or not isinstance(item, dict)
                    else item.get("source") or caller.source,
                )
                good.append(item)
            except HinataValidationError as e:
                report.errors.append(f"line {n}: " + e.message.removeprefix("record 0: "))
        by_source: dict[str, list[Any]] = {}
        for item in good:  # the user may import another app's export as that app's records
            src = (item.get("source") if caller.admin else None) or caller.source
            by_source.setdefault(src, []).append(item)
        for src, items in by_source.items():
            report.add(await self.add(items, Caller(src, caller.scopes) if caller.admin else caller))

    async def import_markdown(
        self, folder: Path, caller: Caller, *, access: str | None = None
    ) -> ImportReport:
        """Import a folder of notes; on later runs only changed files are read and stored."""
        store = await self.ready()
        root, files = await asyncio.to_thread(_list_notes, folder)
        report = ImportReport()
        known = await asyncio.to_thread(store.imported_files, str(root) + os.sep)
        seen: set[str] = set()
        pending: list[tuple[dict[str, Any], tuple[str, str, str, float]]] = []
        for path, mtime in files:
            key = str(path)
            seen.add(key)
            prev = known.get(key)
            if prev is not None and prev[2] == mtime:
                report.skipped += 1
                continue
            data = await asyncio.to_thread(path.read_bytes)
            chash = file_hash(data)
            rec = markdown_record(path, root, data.decode("utf-8", errors="replace"), mtime)
            if access:
                rec["access"] = access
            if prev is not None and prev[1] == chash:
                report.unchanged += 1
                await asyncio.to_thread(store.set_imported, [(key, rec["id"], chash, mtime)], [])
                continue
            pending.append((rec, (key, rec["id"], chash, mtime)))
        for i in range(0, len(pending), 100):
            chunk = pending[i : i + 100]
            try:
                report.add(await self.add([r for r, _ in chunk], caller))
            except HinataValidationError as e:
                for p in e.problems:
                    idx = p.get("index")
                    where = chunk[idx][1][0] if isinstance(idx, int) else str(root)
                    report.errors.append(f"{where}: {p['field']}: {p['message']}")
                continue
            await asyncio.to_thread(store.set_imported, [state for _, state in chunk], [])
        gone = [p for p in known if p not in seen]
        if gone:
            ids = [known[p][0] for p in gone]
            report.removed = await asyncio.to_thread(store.delete_ids, ids)
            await asyncio.to_thread(store.set_imported, [], gone)
            self._written(report.removed)
        self.audit(
            caller,
            "hinata.import",
            kind="markdown",
            folder=str(root),
            **{k: v for k, v in report.to_dict().items() if k != "errors"},
        )
        return report

    # -- Core rules ----------------------------------------------------------------------------------
    async def rules(self, caller: Caller) -> list[dict[str, Any]]:
        self.audit(caller, "rules.list")
        return await asyncio.to_thread((await self.ready()).rules)

    async def add_rule(self, text: str, pinned: bool, caller: Caller) -> dict[str, Any]:
        text = _rule_text(text)
        rule = await asyncio.to_thread((await self.ready()).add_rule, text, pinned)
        self.events.publish(PersonalDataChanged(action="rules"))
        return rule

    async def update_rule(
        self, rule_id: int, caller: Caller, *, text: str | None = None, pinned: bool | None = None
    ) -> dict[str, Any]:
        rule = await asyncio.to_thread(
            (await self.ready()).update_rule,
            rule_id,
            text=_rule_text(text) if text is not None else None,
            pinned=pinned,
        )
        self.events.publish(PersonalDataChanged(action="rules"))
        return rule

    async def delete_rule(self, rule_id: int, caller: Caller) -> None:
        if not await asyncio.to_thread((await self.ready()).delete_rule, rule_id):
            raise NotFoundError(f"no Core rule {rule_id}")
        self.events.publish(PersonalDataChanged(action="rules"))

    # -- export / delete everything --------------------------------------------------------------
    async def export(self, caller: Caller) -> AsyncIterator[bytes]:
        """Everything, as JSONL: records (with what was derived from them), then Core rules."""
        store = await self.ready()
        self.audit(caller, "export")
        it: Iterator[dict[str, Any]] = store.export()
        while True:
            page = await asyncio.to_thread(_take, it, 200)
            if not page:
                break
            enhs = await asyncio.to_thread(lambda p=page: {r["key"]: store.enhancement(r["key"]) for r in p})
            yield b"".join(
                orjson.dumps(public_record({**r, "enhancement": enhs.get(r["key"])})) + b"\n" for r in page
            )
        for rule in await asyncio.to_thread(store.rules):
            yield orjson.dumps({"kind": "core_rule", "text": rule["text"], "pinned": rule["pinned"]}) + b"\n"

    async def delete_all(self, caller: Caller) -> int:
        """Every record, rule, derived datum and vector; the audit restarts with this entry."""
        store = await self.ready()
        self._audit.clear()
        self._uses.clear()
        n = await asyncio.to_thread(store.delete_all)
        if self.vectors is not None and self.vectors.is_open:
            await asyncio.to_thread(self.vectors.drop_all)
        await asyncio.to_thread(store.vectors_done, await asyncio.to_thread(store.pending_vectors, 10**9))
        if self.builder is not None:
            self.builder.close()
            self.builder = PspBuilder(store, self.embedder, self.vectors)
        self.audit(caller, "delete_all", records=n)
        self.events.publish(PersonalDataChanged(action="delete_all", count=n))
        return n

    # -- PSP -----------------------------------------------------------------------------------------
    async def build_psp(
        self,
        caller: Caller,
        query: str = "",
        *,
        budget: int | None = None,
        context_window: int | None = None,
        action: str = "psp.preview",
    ) -> Psp:
        await self.ready()
        assert self.builder is not None
        if self.vectors is not None and not self.vectors.is_open:
            self.want_vectors()  # this build is full-text only; the next ones hybrid
        if budget is None:
            budget = budget_for(
                context_window, self.embedder.count_tokens(query), None, int(self.setting("psp_max_tokens"))
            )
        psp = await asyncio.to_thread(
            self.builder.build, caller.visibility(), query, budget, app_label=caller.source
        )
        keys = [i.id for i in psp.items if i.kind == "record"]
        self.audit(caller, action, version=psp.version, records=keys)
        return psp

    async def apply(
        self, app_id: str | None, scopes: frozenset[str], body: dict[str, Any], context_window: int | None
    ) -> str | None:
        """Inject this app's PSP into an OpenAI chat body in place; the version, or None."""
        if app_id is None or self.paused or not self.injection(app_id):
            return None
        if self.store is None:
            await self.ready()  # a request in the first seconds opens the store now
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return None
        query = last_user_text(messages)
        request_tokens = (
            self.embedder.count_tokens(orjson.dumps(messages).decode())
            if len(messages) < 64
            else sum(len(orjson.dumps(m)) for m in messages) // 4
        )
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        budget = budget_for(
            context_window,
            request_tokens,
            max_tokens if isinstance(max_tokens, int) else None,
            int(self.setting("psp_max_tokens")),
        )
        if budget < 64:
            return None
        caller = Caller(app_id, scopes)
        psp = await self.build_psp(caller, query, budget=budget, action="psp.inject")
        if psp.version is None:
            return None
        merge_system(messages, psp.text)
        for item in psp.items:
            if item.kind == "record":
                self._uses[item.id] += 1  # access frequency, flushed with the audit
        return psp.version

    # -- background work ---------------------------------------------------------------------------------
    async def wait_vectors(self, timeout: float = 60.0) -> None:
        """Until every queued record has its vector (or vectors are unavailable). For tests and tools."""
        self._vector_wake.set()
        async with asyncio.timeout(timeout):
            await self._vectors_idle.wait()

    def want_vectors(self) -> None:
        """Load the model and the vector index now (in the background) if they can be."""
        if self.vector_error is None:
            self._vectors_idle.clear()
            self._vector_wake.set()

    async def _vector_worker(self) -> None:
        while True:
            await self._vector_wake.wait()
            self._vector_wake.clear()
            try:
                if self.vectors is not None and not self.vectors.is_open and self.vector_error is None:
                    await self._open_vectors()
                while await asyncio.to_thread(self._vector_pass):
                    pass
            except Exception as e:  # chromadb or the model broken: full-text search still works
                self.vector_error = f"vector index unavailable: {e}"
                log.exception("%s; retrieval falls back to full-text search", self.vector_error)
            self._vectors_idle.set()

    async def _open_vectors(self) -> None:
        if not self.embedder.available:
            self.vector_error = self.embedder.missing_reason
            log.warning("%s; personal retrieval uses full-text search only", self.vector_error)
            return
        assert self.vectors is not None
        model = await asyncio.to_thread(self.embedder.model)
        await asyncio.to_thread(self.vectors.open)
        store = await self.ready()
        # Vectors from another model (or precision) are not comparable: re-embed everything.
        marker = self.vectors.folder / "embedding-model.txt"
        previous = await asyncio.to_thread(lambda: marker.read_text().strip() if marker.exists() else None)
        if previous is not None and previous != model.name:
            log.warning("embedding model changed (%s -> %s): re-embedding every record", previous, model.name)
            await asyncio.to_thread(self.vectors.drop_all)
            await asyncio.to_thread(store.queue_all_vectors)
        await asyncio.to_thread(marker.write_text, model.name)
        if self.builder is not None:
            self.builder.forget_vectors()
        # The vector folder was removed (or never written) while records exist: rebuild it.
        if (
            await asyncio.to_thread(self.vectors.count) == 0
            and await asyncio.to_thread(store.count) > 0
            and await asyncio.to_thread(store.vector_backlog) == 0
        ):
            await asyncio.to_thread(store.queue_all_vectors)
        store.generation += 1  # cached PSP pools were built without vectors

    def _vector_pass(self) -> bool:
        """Embed and index one batch from the queue; False when the queue is empty."""
        store = self.store
        if store is None or self.vectors is None or not self.vectors.is_open:
            return False
        jobs = store.pending_vectors(VECTOR_BATCH)
        if not jobs:
            return False
        upserts = [j for j in jobs if j.op in ("upsert", "update") and j.text]
        vectors = {}
        if upserts:
            from app.kernel.personal.passages import split

            model = self.embedder.model()
            # A long record gets one vector per passage (the model reads only ~256 word pieces).
            parts = [split(j.text or "") for j in upserts]
            mat = model.encode([p for ps in parts for p in ps], kind="passage")
            at = 0
            for j, ps in zip(upserts, parts, strict=True):
                vectors[j.key] = mat[at : at + len(ps)]
                at += len(ps)
        self.vectors.apply(jobs, vectors)
        if self.builder is not None:
            self.builder.forget_vectors([j.key for j in jobs])
        store.vectors_done(jobs)
        store.generation += 1  # pools cache record vectors: let them pick the new ones up
        return True

    async def _enhance_worker(self) -> None:
        while True:
            await self._enhance_wake.wait()
            self._enhance_wake.clear()
            if not self.setting("enhance_with_model") or self._chat is None or self.store is None:
                continue
            try:
                await self._enhance_pass()
            except Exception:
                log.exception("model enhancement failed; records keep their local enhancement")

    async def _enhance_pass(self) -> None:
        from app.kernel.canonical import ChatRequest

        store = await self.ready()
        while self.setting("enhance_with_model"):
            batch = await asyncio.to_thread(store.pending_enhancements, 8)
            if not batch:
                return
            for rec in batch:
                req = ChatRequest.model_validate(
                    {
                        "model": self.setting("enhance_model"),
                        "messages": [
                            {"role": "system", "content": enh.ENHANCE_PROMPT},
                            {
                                "role": "user",
                                "content": f"Highlight: {rec['highlight'][:4000]}\n"
                                f"Note: {rec['note'][:4000]}\nTags: {rec['tags']}",
                            },
                        ],
                        "response_format": {"type": "json_object"},
                        "temperature": 0,
                        "max_tokens": 300,
                    }
                )
                try:
                    answer = await self._chat(req)
                    text = answer.choices[0].message.content if answer.choices else ""
                    result = enh.parse_model_answer(text if isinstance(text, str) else "")
                except ByenatosError as e:
                    log.info("model enhancement of %s failed (%s); keeping the local one", rec["id"], e)
                    result = None
                method = f"model:{self.setting('enhance_model')}"
                if result is None:  # keep the local enhancement; don't retry forever
                    result = enh.keywords(rec["highlight"], rec["note"], rec["tags"], rec["metadata"])
                    method = result.method
                await asyncio.to_thread(
                    store.set_enhancement,
                    rec["key"],
                    tags=result.tags,
                    topics=result.topics,
                    concepts=result.concepts,
                    importance=result.importance,
                    method=method,
                )
                self.events.publish(PersonalDataChanged(action="enhanced", count=1))

    # -- status ----------------------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        store = await self.ready()
        count, backlog, ebacklog = await asyncio.gather(
            asyncio.to_thread(store.count),
            asyncio.to_thread(store.vector_backlog),
            asyncio.to_thread(store.enhance_backlog),
        )
        return {
            "records": count,
            "vector_backlog": backlog,
            "enhance_backlog": ebacklog,
            "retrieval": "hybrid" if self.vectors is not None and self.vectors.is_open else "fts-only",
            "embedding_model": self.embedder.model_dir or str(_default_dir()),
            "embedding_problem": self.vector_error,
            "paused": self.paused,
            "apps": self.apps(),
            "settings": dict(self._settings),
            "encrypted": True,
            "database": str(self.db_path),
        }


def _default_dir() -> Path:
    from app.kernel.personal.embed import default_model_dir

    return default_model_dir()


def _list_notes(folder: Path) -> tuple[Path, list[tuple[Path, float]]]:
    root = folder.expanduser().resolve()
    if not root.is_dir():
        raise BadRequestError(f"{folder} is not a folder")
    return root, list(scan_markdown(root))


def _has_content(query: Any) -> bool:
    from app.kernel.personal.textindex import fts_terms

    return bool(query.phrases) or bool(fts_terms(query))


def _passage(rec: dict[str, Any], query: Any) -> str:
    from app.kernel.personal.textindex import best_passage

    return best_passage(query, "\n".join(p for p in (rec["highlight"], rec["note"]) if p))


def _rerank_texts(store: PersonalStore, keys: list[int]) -> dict[int, str]:
    from app.kernel.personal.store import record_text

    rows = store.by_keys(keys)
    return {k: record_text(r["highlight"], r["note"], r["tags"]) for k, r in rows.items()}


def _take(it: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _rule_text(text: str) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise BadRequestError("a Core rule needs some text")
    if len(text) > MAX_RULE:
        raise BadRequestError(f"a Core rule is at most {MAX_RULE} characters ({len(text)} given)")
    return text


def public_record(rec: dict[str, Any]) -> dict[str, Any]:
    """A stored row in the API's HiNATA shape (no internal keys or counters)."""
    out = {
        "id": rec["id"],
        "timestamp": rec["timestamp"],
        "source": rec["source"],
        "highlight": rec["highlight"],
        "note": rec["note"],
        "address": rec["address"],
        "tag": rec["tags"],
        "access": rec["access"],
    }
    if rec.get("raw_data") is not None:
        out["raw_data"] = rec["raw_data"]
    if rec.get("metadata") is not None:
        out["metadata"] = rec["metadata"]
    if rec.get("enhancement") is not None:
        out["enhancement"] = rec["enhancement"]
    return out


def last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))[:2000]
    return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def merge_system(messages: list[Any], psp_text: str) -> None:
    """Add the PSP to the app's own system prompt (after it), or as the first message if it has none."""
    for m in messages:
        if isinstance(m, dict) and m.get("role") in ("system", "developer"):
            content = m.get("content")
            if isinstance(content, list):
                m["content"] = [*content, {"type": "text", "text": psp_text}]
            else:
                m["content"] = f"{content}\n\n{psp_text}" if content else psp_text
            return
    messages.insert(0, {"role": "system", "content": psp_text})
