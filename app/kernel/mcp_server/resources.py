"""The MCP server's resources: the current PSP, the latest records, and each record.

    byenatos://psp              the Personal System Prompt for the calling app, as it would be
                                injected now (Markdown); needs `psp:read`, as /api/psp does
    byenatos://records/latest   the newest records the app may see (JSON); needs `hinata:read`
    byenatos://records/{id}     one record (JSON; the id percent-encoded); needs `hinata:read`

resources/list gives the two fixed ones, then one resource per record, newest first, a page
at a time: a client that follows the cursors reads the app's whole memory listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import orjson

from app.kernel.mcp_server.tools import Call

PSP_URI = "byenatos://psp"
LATEST_URI = "byenatos://records/latest"
RECORD_PREFIX = "byenatos://records/"
RECORD_TEMPLATE = RECORD_PREFIX + "{id}"
LATEST_COUNT = 20
MAX_PAGE = 200  # records per search: the personal service's limit


@dataclass(frozen=True)
class Listed:
    uri: str
    name: str
    title: str
    description: str
    mime_type: str
    scope: str


FIXED = (
    Listed(PSP_URI, "psp", "Personal System Prompt",
           "What ByenatOS would tell a model about the user for this app now: core rules, current work, "
           "relevant and latest records (Markdown).", "text/markdown", "psp:read"),
    Listed(LATEST_URI, "latest-records", "Latest records",
           f"The {LATEST_COUNT} newest records of the user's memory this app may see (JSON).",
           "application/json", "hinata:read"),
)


def record_uri(record_id: str) -> str:
    return RECORD_PREFIX + quote(record_id, safe="")


def scope_of(uri: str) -> str | None:
    """The scope reading `uri` needs, or None for a URI that is none of ours."""
    if uri == PSP_URI:
        return "psp:read"
    if uri.startswith(RECORD_PREFIX) and len(uri) > len(RECORD_PREFIX):
        return "hinata:read"
    return None


def fixed_for(call: Call) -> list[Listed]:
    return [r for r in FIXED if call.app.allows(r.scope)]


async def records_page(call: Call, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Records `offset`… (newest first) the caller may see, and how many there are in all."""
    if not call.app.allows("hinata:read"):
        return [], 0
    found = await call.kernel.personal.search(call.caller, limit=max(1, min(limit, MAX_PAGE)), offset=offset)
    return (found["data"] if limit > 0 else []), int(found["total"])


def listed_record(record: dict[str, Any]) -> Listed:
    title = (record.get("highlight") or record["id"]).strip().replace("\n", " ")
    return Listed(record_uri(record["id"]), record["id"], title[:80],
                  f"A record from {record.get('source')} ({record.get('timestamp')}, {record.get('access')})",
                  "application/json", "hinata:read")


async def read(call: Call, uri: str) -> tuple[str, str]:
    """(mime type, text) of a resource; KeyError for a URI that names nothing."""
    if uri == PSP_URI:
        psp = await call.kernel.personal.build_psp(call.caller, "")
        return "text/markdown", psp.text
    if uri == LATEST_URI:
        records, total = await records_page(call, 0, LATEST_COUNT)
        return "application/json", orjson.dumps({"records": records, "total": total}).decode()
    if uri.startswith(RECORD_PREFIX):
        record = await call.kernel.personal.get(unquote(uri[len(RECORD_PREFIX):]), call.caller)
        return "application/json", orjson.dumps(record).decode()
    raise KeyError(uri)
