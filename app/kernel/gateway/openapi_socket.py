"""The OpenAPI description of /api/socket (socket_routes.py): read the sockets, swap, edit an alias."""

from __future__ import annotations

from typing import Any

from app.kernel.gateway.openapi_kit import (
    INT,
    NUM,
    STR,
    json_content,
    no_content,
    nullable,
    obj,
    ok,
    op,
    path_param,
    ref,
)
from app.kernel.socket.manager import SwapStrategy, SwapTrigger
from app.kernel.socket.router import RoutingStrategy

_MODEL = {"type": "string", "description": "a model id, a bare model name or another alias"}
_ROUTING = {"enum": [s.value for s in RoutingStrategy]}

SCHEMAS: dict[str, Any] = {
    "SwapRequest": obj(
        ("model",),
        closed=True,
        model=_MODEL,
        alias={"type": "string", "default": "default", "description": "letters, digits, '-' or '_'"},
        strategy={"enum": [s.value for s in SwapStrategy], "default": SwapStrategy.GRACEFUL.value},
    ),
    "SwapResult": obj(
        ("alias", "current", "strategy", "trigger"),
        alias=STR,
        previous=nullable(STR),
        current=STR,
        strategy={"enum": [s.value for s in SwapStrategy]},
        trigger={"enum": [s.value for s in SwapTrigger]},
        duration_ms=NUM,
        cancelled=INT,
        still_running=INT,
    ),
    "AliasPatch": obj(
        closed=True,
        fallbacks=nullable({"type": "array", "items": _MODEL}),
        pool=nullable({"type": "array", "items": _MODEL}),
        routing=nullable(_ROUTING),
    ),
    "AliasConfig": obj(
        ("alias", "model", "pool", "fallbacks", "routing"),
        alias=STR,
        model=STR,
        pool={"type": "array", "items": STR},
        fallbacks={"type": "array", "items": STR},
        routing=_ROUTING,
    ),
    "SocketState": obj(
        ("aliases", "deployments", "resident"),
        aliases={
            "type": "array",
            "items": {
                "allOf": [ref("AliasConfig")],
                "properties": {
                    "generation": INT,
                    "in_flight": INT,
                    "pinned_sessions": INT,
                    "last_swap": nullable(ref("SwapResult")),
                },
            },
        },
        deployments={
            "type": "array",
            "items": obj(
                ("model", "state"),
                model=STR,
                state=STR,
                in_flight=INT,
                waiting=INT,
                latency_ms=nullable(NUM),
                failures=INT,
                served=INT,
                errors=INT,
                last_error=nullable(STR),
                open_for_s=NUM,
            ),
        },
        resident={
            "type": "array",
            "items": obj(("model",), model=STR, provider=STR, bytes=INT, leases=INT),
        },
    ),
}

_ALIAS = path_param("alias", "a socket alias, e.g. default, code, writing")

PATHS: dict[str, dict[str, Any]] = {
    "/api/socket": {
        "get": op("Every socket alias, deployment health and the resident models", ok(ref("SocketState")))
    },
    "/api/socket/swap": {
        "post": op(
            "Swap a model into an alias (admin)",
            ok(ref("SwapResult")),
            body=json_content(ref("SwapRequest")),
            errors_=(404, 502, 503, 504),
        )
    },
    "/api/socket/{alias}": {
        "patch": op(
            "Set an alias's pool, fallback chain or routing strategy (admin)",
            ok(ref("AliasConfig")),
            body=json_content(ref("AliasPatch")),
            params=[_ALIAS],
            errors_=(404,),
        ),
        "delete": op(
            "Remove an alias (admin; `default` stays)",
            no_content("Removed"),
            params=[_ALIAS],
            ok_status="204",
            errors_=(400, 404),
        ),
    },
}
