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
    query,
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
    "AutoSwapped": obj(
        ("from", "to", "at", "trigger", "reason", "returns"),
        **{"from": {"type": "string", "description": "the user's model, which the alias left"}},
        to=STR,
        at={"type": "number", "description": "when it left the user's model (unix seconds)"},
        trigger={"enum": [s.value for s in SwapTrigger]},
        reason={"type": "string", "description": "why, in words"},
        detail={"type": "string", "description": "the facts behind the reason, without model ids"},
        returns={"type": "boolean", "description": "the user's model comes back once healthy"},
    ),
    "SwapLogEntry": obj(
        ("id", "ts", "alias", "to_model", "trigger"),
        id=INT,
        ts=NUM,
        alias=STR,
        from_model=nullable(STR),
        to_model=STR,
        strategy={"enum": [s.value for s in SwapStrategy]},
        trigger={"enum": [s.value for s in SwapTrigger]},
        reason=STR,
        chosen=nullable(STR),
        chosen_fallbacks=nullable({"type": "array", "items": STR}),
        returns={"type": "boolean"},
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
                    "auto_swapped": nullable(ref("AutoSwapped")),
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
                health={"enum": ["ok", "cooling"]},
                until=nullable({"type": "number", "description": "cooling: when it is tried again (unix seconds)"}),
            ),
        },
        auto_return=obj(("enabled", "after_s"), enabled={"type": "boolean"}, after_s=NUM),
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
    "/api/socket/swaps": {
        "get": op(
            "The swap log, newest first: every swap, and for an automatic one why and what it left",
            ok(obj(("data",), data={"type": "array", "items": ref("SwapLogEntry")})),
            params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                    query("alias", STR, "one alias only")],
            errors_=(400,),
        )
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
