"""/api/documents: the user's indexed folders, the index's progress and skips, and search.

Every route needs the `admin` scope (`middleware.required_scope` denies by default): adding a
folder makes the daemon read it, and search reads the user's documents. Apps see document
passages only as HiNATA records, by the access the user gave the folder. Typed errors become
the API's errors in the guard (400 bad input, 404 a folder that is not indexed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from app.kernel.gateway import web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import KERNEL

if TYPE_CHECKING:
    from app.kernel.documents.service import DocumentsService

ACCESS = ("private", "shared", "public")
FOLDER_FIELDS = ("path", "access", "wait")
MAX_PATH = 4_096
MAX_SKIPPED = 1_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _documents(request: web.Request) -> DocumentsService:
    return request.app[KERNEL].documents


def _unknown_fields(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RequestError(f"{unknown[0]}: not a field of this request (fields: {', '.join(known)})",
                           param=unknown[0])


def _path(value: Any, param: str = "path") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PATH or "\x00" in value:
        raise RequestError(f"{param}: a folder's path (1-{MAX_PATH} characters)", param=param)
    return value


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise RequestError(f"{name}: a whole number from {low} to {high}, not {raw!r}", param=name)
    return int(raw)


async def list_folders(request: web.Request) -> web.Response:
    """The indexed folders, each with its files, passages, pages and skipped files."""
    return _json({"data": _documents(request).folders()})


async def add_folder(request: web.Request) -> web.Response:
    """Index a folder (in the background unless `wait`; `GET /api/documents/status` shows progress)."""
    body = await read_json(request)
    _unknown_fields(body, FOLDER_FIELDS)
    path = _path(body.get("path"))
    access = body.get("access", "private")
    if access not in ACCESS:
        raise RequestError(f"access: one of {', '.join(ACCESS)}", param="access")
    wait = body.get("wait", False)
    if not isinstance(wait, bool):
        raise RequestError("wait: true or false", param="wait")
    result = await _documents(request).add_folder(path, access, wait=wait)
    return _json(result, status=201 if result["status"] == "added" else 200)


async def remove_folder(request: web.Request) -> web.Response:
    """Stop indexing a folder and forget its passages (the files are not touched)."""
    path = _path(request.query.get("path"))
    return _json(await _documents(request).remove_folder(path))


async def rescan(request: web.Request) -> web.Response:
    """Index again now: one folder (`path`) or all; answers when done."""
    raw = await request.read()
    body = await read_json(request) if raw.strip() else {}
    _unknown_fields(body, ("path",))
    path = _path(body["path"]) if "path" in body else None
    return _json({"data": await _documents(request).scan(path)})


async def status(request: web.Request) -> web.Response:
    """What the index is doing (a first index's progress), its totals, and the files it skipped and why."""
    limit = _int_query(request, "skipped_limit", 200, 0, MAX_SKIPPED)
    return _json(await _documents(request).status(skipped_limit=limit))


async def search(request: web.Request) -> web.Response:
    """Passages of the user's documents by meaning, each citing its file and page or lines."""
    from app.kernel.documents.service import MAX_K, MAX_QUERY

    q = request.query.get("q", "")
    if not q.strip() or len(q) > MAX_QUERY:
        raise RequestError(f"q: the words to search for (1-{MAX_QUERY} characters)", param="q")
    k = _int_query(request, "k", 8, 1, MAX_K)
    return _json({"query": q, "data": await _documents(request).search(q, k)})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/documents/folders", list_folders)
    r.add_post("/api/documents/folders", add_folder)
    r.add_delete("/api/documents/folders", remove_folder)
    r.add_post("/api/documents/scan", rescan)
    r.add_get("/api/documents/status", status)
    r.add_get("/api/documents/search", search)
