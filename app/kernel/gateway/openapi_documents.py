"""The OpenAPI description of /api/documents (documents_routes.py): folders, status, search."""

from __future__ import annotations

from typing import Any

from app.kernel.documents.service import MAX_K, MAX_QUERY
from app.kernel.gateway.documents_routes import ACCESS, MAX_PATH, MAX_SKIPPED
from app.kernel.gateway.openapi_kit import (
    BOOL,
    INT,
    NUM,
    OBJ,
    STR,
    json_content,
    nullable,
    obj,
    ok,
    op,
    query,
    ref,
)

_PATH = {"type": "string", "minLength": 1, "maxLength": MAX_PATH, "description": "a folder on this machine"}
_ACCESS = {"enum": list(ACCESS), "default": "private",
           "description": "who may see its passages: private (the user, agents' file search), shared (also apps "
                          "with hinata:read, in their PSP), public"}
_RANGE = nullable({"type": "array", "items": INT, "minItems": 2, "maxItems": 2})

SCHEMAS: dict[str, Any] = {
    "DocumentFolder": obj(
        ("path", "access", "files", "chunks", "pages", "skipped"),
        path=STR, access=_ACCESS, added_at=NUM,
        files={**INT, "description": "files indexed"},
        chunks={**INT, "description": "passages stored"},
        pages=INT,
        skipped={**INT, "description": "files skipped (see the status's `skipped`)"},
        problem=nullable({**STR, "description": "why it could not be scanned (a missing folder: nothing removed)"}),
    ),
    "DocumentFolderAdd": obj(("path",), closed=True, path=_PATH, access=_ACCESS,
                             wait={**BOOL, "default": False, "description": "answer once the folder is indexed"}),
    "DocumentFolderAdded": obj(("folder", "access", "status"), folder=STR, access=_ACCESS,
                               status={"enum": ["added", "updated", "unchanged"]}, report=OBJ),
    "DocumentScanReport": obj(
        ("folder", "trigger", "indexed", "unchanged", "skipped", "removed"),
        folder=nullable(STR), trigger={"enum": ["scan", "watch", "remove"]}, files_total=INT, files_done=INT,
        indexed=INT, unchanged=INT, skipped=INT, removed=INT, pages=INT, chunks=INT, current=STR,
        eta_s=nullable(NUM), seconds=NUM, problem=STR,
    ),
    "DocumentSkip": obj(
        ("path", "code", "reason"),
        path=STR, kind=STR,
        code={**STR, "description": "encrypted, broken, too_large, binary, unreadable, not_a_file, no_text, "
                                    "unsupported, vanished, store; partial: indexed with something left out"},
        reason=STR, indexed=BOOL,
    ),
    "DocumentsStatus": obj(
        ("state", "folders", "files", "chunks", "pages", "skipped_total", "skipped"),
        state={"enum": ["idle", "indexing"]},
        current=nullable(ref("DocumentScanReport")),
        queued=INT, watching=BOOL, watch_problem=nullable(STR),
        folders={"type": "array", "items": ref("DocumentFolder")},
        files=INT, chunks=INT, pages=INT, skipped_total=INT,
        skipped={"type": "array", "items": ref("DocumentSkip")},
        last_scans=OBJ, max_file_mb=NUM,
    ),
    "DocumentHit": obj(
        ("file", "address", "citation", "text", "score"),
        file=STR, folder=STR, kind=STR,
        page=nullable(INT), lines=_RANGE, paragraphs=_RANGE,
        address={**STR, "description": "file:///…#page=3, …#L10-L42 or …#para=3-10"},
        citation={**STR, "description": "the file and its place in words"},
        text=STR, score=NUM, id=STR,
    ),
}

_FOLDER_Q = query("path", {"type": "string", "minLength": 1, "maxLength": MAX_PATH}, "the indexed folder")
_FOLDER_Q["required"] = True

PATHS: dict[str, dict[str, Any]] = {
    "/api/documents/folders": {
        "get": op("The indexed folders (admin)",
                  ok(obj(("data",), data={"type": "array", "items": ref("DocumentFolder")}))),
        "post": op("Index a folder (admin): in the background unless `wait`", ok(ref("DocumentFolderAdded")),
                   body=json_content(ref("DocumentFolderAdd")), ok_status="201",
                   also={"200": ok(ref("DocumentFolderAdded"), "Indexed already (access updated, or unchanged)")}),
        "delete": op("Stop indexing a folder and forget its passages (admin); the files are untouched",
                     ok(obj(("folder", "status"), folder=STR, status={"const": "removed"}, forgotten_files=INT)),
                     params=[_FOLDER_Q], errors_=(400, 404)),
    },
    "/api/documents/scan": {
        "post": op("Index again now, one folder or all (admin); answers when done",
                   ok(obj(("data",), data={"type": "array", "items": ref("DocumentScanReport")})),
                   body=json_content(obj(closed=True, path=_PATH)), body_required=False),
    },
    "/api/documents/status": {
        "get": op("What the index is doing, its totals, and the files it skipped and why (admin)",
                  ok(ref("DocumentsStatus")),
                  params=[query("skipped_limit", {"type": "integer", "minimum": 0, "maximum": MAX_SKIPPED,
                                                  "default": 200})],
                  errors_=(400,)),
    },
    "/api/documents/search": {
        "get": op("Passages of the user's documents by meaning, citing file and page or lines (admin)",
                  ok(obj(("query", "data"), query=STR, data={"type": "array", "items": ref("DocumentHit")})),
                  params=[
                      {**query("q", {"type": "string", "minLength": 1, "maxLength": MAX_QUERY,
                                     "pattern": r"\S"}, "what to look for"), "required": True},
                      query("k", {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 8}),
                  ],
                  errors_=(400,)),
    },
}
