"""The ByenatOS API under /api: apps, models, usage, audit, health, events; and /metrics.

Scopes are enforced by the guard middleware (see `middleware.required_scope`); handlers here
only add the finer rules: which scopes an app may give itself, and that an app without the
admin scope sees its own usage only.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

import orjson

from app import version
from app.kernel.errors import PermissionDeniedError
from app.kernel.gateway import web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import KERNEL, LANE, SSE_HEADERS
from app.kernel.gateway.middleware import APP_KEY
from app.kernel.monitor.metrics import counter_lines
from app.kernel.security.apps import SELF_SERVICE_SCOPES, UNCHANGED, AppIdentity, AppLimits, check_scopes

KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies and clients from timing out


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


# -- health ------------------------------------------------------------------------------------
async def health(request: web.Request) -> web.Response:
    kernel = request.app[KERNEL]
    return _json(
        {"status": "ok", "service": "byenatos", "version": version(), "models": len(kernel.list_models())}
    )


# -- apps --------------------------------------------------------------------------------------
async def register_app(request: web.Request) -> web.Response:
    """Open registration for `chat`/`hinata:write`; anything more (or a re-issue) needs the admin token."""
    kernel = request.app[KERNEL]
    caller: AppIdentity | None = request.get(APP_KEY)
    body = await read_json(request)
    name, scopes, replace = body.get("name"), body.get("scopes", ["chat"]), body.get("replace", False)
    if not isinstance(name, str) or not name.strip():
        raise RequestError("name: Field required (what the app is called, e.g. 'my-editor')", param="name")
    if not isinstance(replace, bool):
        raise RequestError("replace: Input should be a valid boolean", param="replace")
    scopes = check_scopes(scopes)  # unknown names are a 400 whoever asks
    check_limits(body)
    is_admin = caller is not None and caller.is_admin
    if not is_admin:
        if not kernel.settings.gateway.open_registration:
            raise PermissionDeniedError(
                "app registration needs the user's admin token here "
                "(gateway.open_registration is off): ask the user to run "
                f"`byenatos apps register {name.strip()}`"
            )
        extra = sorted(set(scopes) - SELF_SERVICE_SCOPES)
        limited = [k for k in LIMIT_KEYS if body.get(k) is not None]
        if extra or replace or limited:
            what = (
                f"the scopes {', '.join(extra)}"
                if extra
                else "re-issuing a token"
                if replace
                else f"setting {', '.join(limited)}"
            )
            raise PermissionDeniedError(
                f"{what} need the user's approval: the user can run `byenatos apps register {name.strip()} "
                f"--scope ...` (apps may give themselves {', '.join(sorted(SELF_SERVICE_SCOPES))} only)"
            )
    limits = _limits_from(body) if is_admin else None
    info, token = kernel.apps.register(name, scopes, replace=replace, limits=limits)
    return _json({**info.to_dict(), "token": token}, status=201)


LIMIT_KEYS = ("rate_limit_rpm", "daily_token_budget", "daily_cost_budget")
MAX_STORED_INT = 2**63 - 1  # SQLite's INTEGER: a larger count cannot be stored (and no budget needs it)


def check_limits(body: dict[str, Any]) -> None:
    """The limit fields present: non-negative, whole where they count, storable; else a 400 naming one."""
    for key in LIMIT_KEYS:
        value = body.get(key)
        if value is None:
            continue
        whole = key != "daily_cost_budget"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (whole and (value != int(value) or value > MAX_STORED_INT))
        ):
            kind = f"a whole number from 0 to {MAX_STORED_INT}" if whole else "a non-negative number"
            raise RequestError(f"{key}: {kind}, or null", param=key)


def _limits_from(body: dict[str, Any]) -> AppLimits | None:
    if not any(body.get(k) is not None for k in LIMIT_KEYS):
        return None
    return AppLimits(
        body.get("rate_limit_rpm"), body.get("daily_token_budget"), body.get("daily_cost_budget")
    )


async def list_apps(request: web.Request) -> web.Response:
    revoked = request.query.get("revoked") in ("1", "true", "yes")
    apps = request.app[KERNEL].apps.list(include_revoked=revoked)
    return _json({"data": [a.to_dict() for a in apps]})


async def my_app(request: web.Request) -> web.Response:
    caller: AppIdentity = request[APP_KEY]
    return _json(request.app[KERNEL].apps.get(caller.id).to_dict())


async def revoke_app(request: web.Request) -> web.Response:
    return _json(request.app[KERNEL].apps.revoke(request.match_info["app_id"]).to_dict())


async def update_app(request: web.Request) -> web.Response:
    body = await read_json(request)
    unknown = sorted(set(body) - set(LIMIT_KEYS))
    if unknown:
        raise RequestError(
            f"{unknown[0]}: not a setting of an app (settable: {', '.join(LIMIT_KEYS)})", param=unknown[0]
        )
    check_limits(body)
    changes = {k: body[k] if k in body else UNCHANGED for k in LIMIT_KEYS}
    return _json(request.app[KERNEL].apps.set_limits(request.match_info["app_id"], **changes).to_dict())


# -- models ------------------------------------------------------------------------------------
async def models(request: web.Request) -> web.Response:
    specs = request.app[KERNEL].list_models()
    return _json({"data": [s.model_dump(mode="json") for s in specs]})


async def scan_models(request: web.Request) -> web.Response:
    report = await request.app[KERNEL].scan()
    return _json({"providers": report.providers, "models": report.models, "notes": report.notes})


# -- usage, audit, metrics -----------------------------------------------------------------------
def _time_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            return datetime.fromisoformat(raw).timestamp()
        except ValueError:
            raise RequestError(
                f"{name}: unix seconds or an ISO 8601 date/time, got {raw!r}", param=name
            ) from None
    if not math.isfinite(value):
        raise RequestError(f"{name}: a finite number of unix seconds", param=name)
    return value


async def usage(request: web.Request) -> web.Response:
    """Requests, tokens and cost per app (and per model with ?by=model), from the audit log."""
    kernel = request.app[KERNEL]
    caller: AppIdentity = request[APP_KEY]
    by = request.query.get("by", "app")
    if by not in ("app", "model"):
        raise RequestError("by: 'app' or 'model'", param="by")
    since, until = _time_param(request, "since"), _time_param(request, "until")
    await kernel.accounting.settle()
    rows = await kernel.accounting.audit.usage(since=since, until=until, by_model=by == "model")
    if not caller.is_admin:
        rows = [r for r in rows if r["app"] == caller.id]  # an app sees its own usage only
    return _json({"since": since, "until": until, "data": rows})


async def audit(request: web.Request) -> web.Response:
    kernel = request.app[KERNEL]
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise RequestError("limit: an integer from 1 to 1000", param="limit") from None
    if not 1 <= limit <= 1000:
        raise RequestError("limit: an integer from 1 to 1000", param="limit")
    await kernel.accounting.settle()
    rows = await kernel.accounting.audit.recent(limit=limit, app=request.query.get("app"))
    return _json({"data": rows})


async def metrics(request: web.Request) -> web.Response:
    accounting = request.app[KERNEL].accounting
    accounting.drain()
    text = accounting.metrics.render(accounting.gauges())
    lane = request.app.get(LANE)
    if lane is not None:
        text += "\n".join(counter_lines(
            "byenatos_gateway_lane_requests_total",
            "Chat requests the pass-through lane took: answered there, or handed to the general path.",
            [((("result", "served"),), lane.served), ((("result", "handed_over"),), lane.handed_over)],
        )) + "\n"
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"X-Prometheus-Format": "0.0.4"}
    )


# -- events ------------------------------------------------------------------------------------
async def events(request: web.Request) -> web.StreamResponse:
    """Kernel events as server-sent events: `event: <Name>` and the event as JSON."""
    kernel = request.app[KERNEL]
    sub = kernel.events.subscribe()
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            data = orjson.dumps(event.to_dict(), default=str)
            await response.write(b"event: " + event.name.encode() + b"\ndata: " + data + b"\n\n")
    finally:
        sub.close()  # client gone (the handler is cancelled): stop collecting for it


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/health", health)
    app.router.add_post("/api/apps/register", register_app)
    app.router.add_get("/api/apps", list_apps)
    app.router.add_get("/api/apps/me", my_app)
    app.router.add_delete("/api/apps/{app_id}", revoke_app)
    app.router.add_patch("/api/apps/{app_id}", update_app)
    app.router.add_get("/api/models", models)
    app.router.add_post("/api/models/scan", scan_models)
    app.router.add_get("/api/usage", usage)
    app.router.add_get("/api/audit", audit)
    app.router.add_get("/api/events", events)
    app.router.add_get("/metrics", metrics)
