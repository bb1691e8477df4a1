"""The OpenAPI description of /api/hinata and /api/psp (personal_routes.py).

Where a rule cannot be said in JSON Schema (a record needs a highlight or a note that is not
blank; ids unique within a batch; a timestamp between 1970 and tomorrow), the schema says no
more than the handler checks and the description says the rest: a body the schema refuses is
always refused, never stored.
"""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.openapi_kit import (
    ANY,
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
    path_param,
    query,
    ref,
)
from app.kernel.gateway.personal_routes import DELETE_ALL_CONFIRM, MAX_INT, MAX_PSP_BUDGET
from app.kernel.personal.hinata import (
    ACCESS,
    MAX_ADDRESS,
    MAX_BATCH,
    MAX_HIGHLIGHT,
    MAX_NOTE,
    MAX_TAG,
    MAX_TAGS,
)

_ACCESS = {"enum": list(ACCESS)}
# Blank around the text is stripped first (and a tag's leading '#'s), then the limits apply.
_TAG = {
    "type": "string",
    "pattern": (rf"^\s*#*[^\s#,]\s*$|^\s*(?:#+[^#\n\r\t,]|[^\s#,])[^\n\r\t,]{{0,{MAX_TAG - 2}}}[^\s,]\s*$"),
    "description": f"1-{MAX_TAG} characters after blanks and leading '#' are stripped; no commas or line breaks",
}
_TEXT = {"type": "string", "pattern": r"\S"}  # not blank
_RECORD_ID = {
    "type": "string",
    "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9._:@/#+-]{0,199}\s*$",
    "description": "1-200 characters: letters, digits and . _ : @ / # + - (not starting with a symbol)",
}

SCHEMAS: dict[str, Any] = {
    "HinataIn": {
        **obj(
            closed=True,
            id=nullable(_RECORD_ID),
            timestamp={
                "type": ["string", "number", "null"],
                "description": "ISO 8601 (or unix seconds), 1970 to tomorrow; now when left out",
            },
            source=nullable({"type": "string", "description": "must be the calling app's id when given"}),
            # The lengths are said in words, not `maxLength`: they count after blanks are trimmed
            # (a longer string with blanks around is taken), and no fuzzer can make a string long
            # enough to cross the larger ones (Hypothesis stops near 10,000 characters).
            highlight={"type": "string", "description": f"the passage; at most {MAX_HIGHLIGHT:,} characters"},
            note={"type": "string", "description": f"the user's own words; at most {MAX_NOTE:,} characters"},
            address={
                "type": "string",
                "description": f"a URL, file path or other locator; at most {MAX_ADDRESS:,} characters",
            },
            tag={"type": "array", "maxItems": MAX_TAGS, "items": _TAG},
            access=_ACCESS,
            raw_data={**ANY, "description": "any JSON, at most 64 KiB"},
            metadata=nullable({"type": "object", "description": "at most 64 KiB of JSON"}),
        ),
        # A record needs a highlight or a note that is not blank.
        "anyOf": [obj(("highlight",), highlight=_TEXT), obj(("note",), note=_TEXT)],
    },
    "HinataSubmission": {
        "anyOf": [
            ref("HinataIn"),
            {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref("HinataIn")},
            obj(
                ("records",),
                records={"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref("HinataIn")},
            ),
        ],
        "description": f'One record, a list of at most {MAX_BATCH}, or {{"records": [...]}}; ids unique in a batch',
    },
    "HinataWritten": obj(
        ("data",),
        data={
            "type": "array",
            "items": obj(("id", "status"), id=STR, status={"enum": ["created", "updated", "unchanged"]}),
        },
    ),
    "Hinata": obj(
        ("id", "timestamp", "source", "highlight", "note", "address", "tag", "access"),
        id=STR,
        timestamp=STR,
        source=STR,
        highlight=STR,
        note=STR,
        address=STR,
        tag={"type": "array", "items": STR},
        access=_ACCESS,
        raw_data=ANY,
        metadata=OBJ,
        enhancement=nullable(OBJ),
    ),
    "HinataHit": {
        "allOf": [
            ref("Hinata"),
            obj(
                score={
                    "type": "number",
                    "description": "relevance 0-1 (ranked searches only: with q or phrase)",
                },
                matched={
                    "type": "array",
                    "items": STR,
                    "description": "the query's words found in the record",
                },
                passage={"type": "string", "description": "the record's passage that matched best"},
            ),
        ]
    },
    "HinataPage": obj(
        ("data", "total", "offset", "next_offset"),
        data={"type": "array", "items": ref("HinataHit")},
        total=INT,
        offset=INT,
        next_offset=nullable(INT),
        retrieval={
            "type": "string",
            "enum": ["hybrid", "fts-only", "vector"],
            "description": "ranked searches",
        },
        time_range=obj(
            ("since", "until", "phrase"),
            since=STR,
            until=STR,
            phrase={"type": "string", "description": 'the words of q that named it ("last week", "昨天")'},
        ),
    ),
    "ImportRequest": {
        "anyOf": [
            obj(("format", "content"), format={"const": "jsonl"}, content={"type": "string"}),
            obj(
                ("format", "path"),
                format={"const": "markdown"},
                path={
                    "type": "string",
                    "minLength": 1,
                    "description": "a folder on this machine (admin only)",
                },
                access=nullable(_ACCESS),
            ),
        ]
    },
    "ImportReport": obj(
        ("created", "updated", "unchanged", "skipped", "removed", "errors", "error_count"),
        created=INT,
        updated=INT,
        unchanged=INT,
        skipped=INT,
        removed=INT,
        errors={"type": "array", "items": STR},
        error_count=INT,
    ),
    "Psp": obj(
        ("version", "text", "budget", "tokens", "items", "app", "injects", "paused"),
        version=nullable(STR),
        text=STR,
        budget=INT,
        tokens=INT,
        layers={"type": "object", "additionalProperties": INT},
        retrieval=STR,
        took_ms=NUM,
        items={
            "type": "array",
            "items": obj(
                ("layer", "kind", "text", "tokens"),
                layer=STR,
                kind=STR,
                id=ANY,
                text=STR,
                tokens=INT,
                source=nullable(STR),
                scores=nullable(OBJ),
            ),
        },
        app=STR,
        injects=BOOL,
        paused=BOOL,
    ),
    "PspStatus": obj(
        ("records", "paused", "apps", "settings"),
        records=INT,
        vector_backlog=INT,
        enhance_backlog=INT,
        retrieval=STR,
        embedding_model=STR,
        embedding_problem=nullable(STR),
        paused=BOOL,
        apps={"type": "object", "additionalProperties": BOOL},
        settings=OBJ,
        encrypted=BOOL,
        database=STR,
    ),
    "CoreRule": obj(("id", "text", "pinned"), id=INT, text=STR, pinned=BOOL, position=INT, updated_at=NUM),
    "PspSettings": obj(
        ("paused", "enhance_with_model", "enhance_model", "psp_max_tokens", "embedding_model"),
        paused=BOOL,
        enhance_with_model=BOOL,
        enhance_model=STR,
        psp_max_tokens=INT,
        embedding_model=STR,
    ),
    "PspSettingsUpdate": obj(
        closed=True,
        paused=BOOL,
        enhance_with_model=BOOL,
        enhance_model={"type": "string", "pattern": r"\S", "description": "a model id, name or alias"},
        psp_max_tokens={"type": "integer", "minimum": 64, "maximum": 32_000},
        embedding_model={
            "type": "string",
            "pattern": r"\S",
            "description": "'local', or a model whose provider embeds",
        },
    ),
}

_HINATA_READ_PARAMS = [
    query(
        "q",
        STR,
        "a question or words: ranked by meaning and words (BM25 on any word fused with vectors), best "
        'first; "quoted phrases" must appear verbatim; a time it names ("last week", "in May", "昨天") '
        "filters by time",
    ),
    query("text", STR, "the same as q"),
    query("phrase", STR, "words that must appear exactly, in this order"),
    query("mode", {"type": "string", "enum": ["hybrid", "fts", "vector"], "default": "hybrid"}),
    query("tag", STR),
    query("source", STR, "an app id"),
    query("since", STR, "ISO 8601"),
    query("until", STR, "ISO 8601"),
    query("access", _ACCESS),
    query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}),
    query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_INT, "default": 0}),
]
_RULE_ID = path_param("id", "a Core rule id", {"type": "integer"})
_RULE_LIST = obj(("data",), data={"type": "array", "items": ref("CoreRule")})

_NDJSON = {"type": "string", "description": "one JSON record per line"}

PATHS: dict[str, dict[str, Any]] = {
    "/api/hinata": {
        "post": op(
            "Submit HiNATA records (the calling app is their source)",
            ok(ref("HinataWritten"), "Stored, nothing new: every record was unchanged or updated"),
            also={"201": ok(ref("HinataWritten"), "Stored, at least one record created")},
            body=json_content(ref("HinataSubmission")),
        ),
        "get": op(
            "Search the records the caller may see",
            ok(ref("HinataPage")),
            params=_HINATA_READ_PARAMS,
            errors_=(400,),
        ),
    },
    "/api/hinata/import": {
        "post": op(
            "Import records: a JSONL body, or JSON naming JSONL text or a folder of Markdown notes (admin)",
            ok(ref("ImportReport")),
            body={
                "application/json": {"schema": ref("ImportRequest")},
                "application/x-ndjson": {"schema": _NDJSON},
                "text/plain": {"schema": _NDJSON},
            },
        )
    },
    "/api/hinata/{id}": {
        "get": op(
            "One record (404 for a record the caller may not see)",
            ok(ref("Hinata")),
            params=[path_param("id", "a record id")],
            errors_=(404,),
        ),
        "delete": op(
            "Forget a record (its app or the user)",
            ok(obj(("deleted",), deleted=STR)),
            params=[path_param("id", "a record id")],
            errors_=(404,),
        ),
    },
    "/api/psp/preview": {
        "get": op(
            "Exactly what would be injected for an app (another app's: admin), with each item's scores",
            ok(ref("Psp")),
            params=[
                query("app", STR, "the app whose PSP to build (default: the caller)"),
                query("q", STR, "the request text the Context layer is picked for"),
                query("model", STR, "size the budget for this model's context window"),
                query(
                    "budget",
                    {"type": "integer", "minimum": 0, "maximum": MAX_PSP_BUDGET},
                    "tokens (0: from the model or the settings)",
                ),
                query("shared", STR, "'0': preview an unregistered app as one without hinata:read"),
            ],
            errors_=(400, 404),
        )
    },
    "/api/psp/status": {"get": op("Records, backlogs, retrieval mode, switches", ok(ref("PspStatus")))},
    "/api/psp/pause": {
        "post": op("Pause every injection (admin)", ok(obj(("paused",), paused={"const": True})))
    },
    "/api/psp/resume": {
        "post": op("Resume injections (admin)", ok(obj(("paused",), paused={"const": False})))
    },
    "/api/psp/apps": {
        "get": op(
            "Which apps get their PSP injected (an app sees its own switch)",
            ok(obj(("apps",), apps={"type": "object", "additionalProperties": BOOL})),
        )
    },
    "/api/psp/apps/{app}": {
        "put": op(
            "Turn injection on or off for an app (an app for itself; others: admin)",
            ok(obj(("app", "inject"), app=STR, inject=BOOL)),
            body=json_content(obj(("inject",), inject=BOOL)),
            params=[path_param("app", "an app id")],
        )
    },
    "/api/psp/rules": {
        "get": op("Core rules, pinned first", ok(_RULE_LIST)),
        "post": op(
            "Add a Core rule (admin)",
            ok(ref("CoreRule"), "Created"),
            ok_status="201",
            body=json_content(
                obj(
                    ("text",),
                    text={**_TEXT, "description": "at most 1000 characters, blanks collapsed"},
                    pinned=BOOL,
                )
            ),
        ),
    },
    "/api/psp/rules/{id}": {
        "patch": op(
            "Edit or (un)pin a Core rule (admin)",
            ok(ref("CoreRule")),
            body=json_content(obj(text=nullable(_TEXT), pinned=nullable(BOOL))),
            params=[_RULE_ID],
            errors_=(404,),
        ),
        "delete": op(
            "Forget a Core rule (admin)",
            ok(obj(("deleted",), deleted=INT)),
            params=[_RULE_ID],
            errors_=(400, 404),
        ),
    },
    "/api/psp/export": {
        "get": op(
            "Everything, as JSONL: records with what was derived from them, then Core rules (admin)",
            {"description": "JSON Lines", "content": {"application/x-ndjson": {"schema": _NDJSON}}},
        )
    },
    "/api/psp/delete-all": {
        "post": op(
            "Delete every record, rule and vector (admin)",
            ok(obj(("deleted_records",), deleted_records=INT)),
            body=json_content(obj(("confirm",), confirm={"const": DELETE_ALL_CONFIRM})),
        )
    },
    "/api/psp/audit": {
        "get": op(
            "Who read or changed personal data, newest first (admin)",
            ok(
                obj(
                    ("data",),
                    data={
                        "type": "array",
                        "items": obj(("ts", "action"), ts=NUM, app=nullable(STR), action=STR, detail=ANY),
                    },
                )
            ),
            params=[
                query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                query("app", STR),
            ],
            errors_=(400,),
        )
    },
    "/api/psp/settings": {
        "get": op("Personalization settings", ok(ref("PspSettings"))),
        "patch": op(
            "Change personalization settings (admin; all of them or, on an error, none)",
            ok(ref("PspSettings")),
            body=json_content(ref("PspSettingsUpdate")),
            errors_=(404,),
        ),
    },
}
