"""The OpenAPI description of /api/sessions (sessions_routes.py)."""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.openapi_kit import (
    BOOL,
    INT,
    NUM,
    OBJ,
    OPENAI_SSE,
    STR,
    UPSTREAM,
    json_content,
    nullable,
    obj,
    ok,
    op,
    path_param,
    query,
    ref,
)

_ID = path_param("session_id", "a session id (sess-…) of the calling app")
_MESSAGE = obj(("role",), role={"enum": ["system", "developer", "user", "assistant", "tool"]},
               content={"anyOf": [STR, {"type": "array", "items": OBJ}, {"type": "null"}]})

SCHEMAS: dict[str, Any] = {
    "SessionCreate": obj(
        alias={"type": "string", "minLength": 1, "description": "the socket alias it talks to (default: default)"},
        system={**STR, "description": "the system prompt"},
        metadata=OBJ,
    ),
    "Session": obj(
        ("id", "object", "alias", "open", "message_count"),
        id=STR, object={"const": "session"}, alias=STR, metadata=OBJ, open=BOOL, created_at=NUM,
        updated_at=NUM, closed_at=nullable(NUM), message_count=INT,
    ),
    "SessionList": obj(("object", "data"), object={"const": "list"},
                       data={"type": "array", "items": ref("Session")}),
    "SessionUpdate": obj(
        system={**STR, "description": "replaces the system prompt"},
        metadata={**OBJ, "description": "replaces the metadata"},
        messages={"type": "array", "items": _MESSAGE, "description": "added to the history, unanswered"},
    ),
    "SessionTurnRequest": obj(
        ("message",),
        message={"anyOf": [{"type": "string", "minLength": 1}, _MESSAGE]},
        stream=BOOL,
        temperature=nullable(NUM),
        top_p=nullable(NUM),
        max_tokens=nullable({"type": "integer", "minimum": 1}),
        seed=nullable({"type": "integer", "minimum": 1}),
    ),
    "SessionTurn": obj(
        ("object", "session", "model", "message"),
        object={"const": "session.turn"}, session=STR, model={**STR, "description": "the model that answered"},
        message=OBJ, finish_reason=nullable(STR), usage=nullable(OBJ),
    ),
    "SessionHistory": obj(
        ("object", "session", "data"),
        object={"const": "list"}, session=STR,
        data={"type": "array", "items": obj(("seq", "message"), seq=INT, message=OBJ, model=nullable(STR),
                                            created_at=NUM)},
    ),
    "SessionDeleted": obj(("id", "object", "deleted"), id=STR, object={"const": "session.deleted"}, deleted=BOOL),
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/sessions": {
        "post": op("Open a session with a socket alias", {"description": "Created",
                                                          "content": json_content(ref("Session"))},
                   ok_status="201", body=json_content(ref("SessionCreate")), errors_=(404,)),
        "get": op("This app's sessions, most recently active first", ok(ref("SessionList")),
                  params=[query("closed", BOOL, "include closed sessions")], errors_=(400,)),
    },
    "/api/sessions/{session_id}": {
        "get": op("One of this app's sessions", ok(ref("Session")), params=[_ID], errors_=(404,)),
        "patch": op("Update a session's context: system prompt, metadata, unanswered messages",
                    ok(ref("Session")), params=[_ID], body=json_content(ref("SessionUpdate")), errors_=(404,)),
        "delete": op("Forget a session and its history", ok(ref("SessionDeleted")), params=[_ID], errors_=(404,)),
    },
    "/api/sessions/{session_id}/messages": {
        "get": op("The session's messages, oldest first, with the model that answered each",
                  ok(ref("SessionHistory")), params=[_ID], errors_=(404,)),
        "post": op("One turn: the alias's current model answers, with the history trimmed to its window "
                   "(stream with `stream: true`: chat completion chunks, then `[DONE]`)",
                   ok(ref("SessionTurn"), sse=OPENAI_SSE), params=[_ID],
                   body=json_content(ref("SessionTurnRequest")), errors_=UPSTREAM),
    },
    "/api/sessions/{session_id}/close": {
        "post": op("End a session (its history stays readable)", ok(ref("Session")), params=[_ID],
                   errors_=(400, 404)),
    },
}
