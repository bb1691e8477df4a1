"""The OpenAPI description of the OpenAI Responses API (responses_routes.py)."""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.openapi_kit import (
    BOOL,
    INT,
    NUM,
    OBJ,
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
    sse_event,
)

_ITEM = {**OBJ, "description": "an input item: a message (role, content as a string or input_text/input_image "
         "parts), a function_call or a function_call_output (whose call_id a preceding call must have); "
         "reasoning items are accepted and dropped"}
_EVENTS = [
    "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
    "response.output_text.delta", "response.output_text.done", "response.content_part.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.output_item.done", "response.completed", "response.incomplete", "response.failed", "error",
]
_ID = path_param("response_id", "a response id (resp_…) of the calling app")

SCHEMAS: dict[str, Any] = {
    "ResponseCreateRequest": obj(
        model={"type": "string", "minLength": 1, "description": "a model id, a bare name or a socket alias "
               "(default: `default`)"},
        input={"anyOf": [STR, {"type": "array", "items": _ITEM}]},
        instructions=nullable(STR),
        previous_response_id=nullable({"type": "string", "minLength": 1}),
        store={**BOOL, "description": "keep the response for GET and previous_response_id (default true)"},
        stream=BOOL,
        tools={"type": "array", "items": OBJ, "description": "function tools only"},
        tool_choice={"anyOf": [{"enum": ["auto", "none", "required"]}, OBJ]},
        parallel_tool_calls=BOOL,
        text=obj(format=OBJ),
        max_output_tokens=nullable({"type": "integer", "minimum": 1}),
        temperature=nullable(NUM),
        top_p=nullable(NUM),
        metadata=nullable({"type": "object", "additionalProperties": STR, "maxProperties": 16}),
        truncation={"enum": ["auto", "disabled"]},
        user=STR,
    ),
    "Response": obj(
        ("id", "object", "status", "output", "model"),
        id=STR,
        object={"const": "response"},
        created_at=NUM,
        status={"enum": ["completed", "incomplete", "failed", "in_progress"]},
        model=STR,
        output={"type": "array", "items": OBJ},
        usage=nullable(obj(input_tokens=INT, output_tokens=INT, total_tokens=INT)),
        previous_response_id=nullable(STR),
        instructions=nullable(STR),
        metadata=OBJ,
        store=BOOL,
        error=nullable(OBJ),
        incomplete_details=nullable(OBJ),
    ),
    "ResponseDeleted": obj(("id", "object", "deleted"), id=STR, object={"const": "response.deleted"},
                           deleted=BOOL),
    "ResponseInputItemList": obj(
        ("object", "data", "has_more"),
        object={"const": "list"},
        data={"type": "array", "items": OBJ},
        first_id=nullable(STR),
        last_id=nullable(STR),
        has_more=BOOL,
    ),
}

PATHS: dict[str, dict[str, Any]] = {
    "/v1/responses": {
        "post": op(
            "OpenAI Responses: a model response, served by the socket through the canonical request "
            "(stream with `stream: true` for typed events)",
            ok(ref("Response"), sse=sse_event(_EVENTS, "the event as JSON, with its sequence_number")),
            body=json_content(ref("ResponseCreateRequest")),
            errors_=UPSTREAM,
        )
    },
    "/v1/responses/{response_id}": {
        "get": op("A stored response of this app", ok(ref("Response")), params=[_ID], errors_=(404,)),
        "delete": op("Delete a stored response of this app", ok(ref("ResponseDeleted")), params=[_ID],
                     errors_=(404,)),
    },
    "/v1/responses/{response_id}/input_items": {
        "get": op(
            "The input items of a stored response, a page at a time",
            ok(ref("ResponseInputItemList")),
            params=[_ID, query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                    query("order", {"enum": ["asc", "desc"]}, "newest first by default"),
                    query("after", STR, "an item id"), query("before", STR, "an item id")],
            errors_=(400, 404),
        )
    },
}
