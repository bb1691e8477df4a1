"""ByenatOS personal-data API: HiNATA records, the PSP preview and the user's controls.

The gateway's guard authenticates the caller and enforces the coarse scope per path
(`hinata:write`/`hinata:read` on /api/hinata, `psp:read` on /api/psp); the record-level rules
(own private records; others' shared/public ones only with `hinata:read`; admin sees all) are
enforced by the personal service. The user's controls — pause, Core rule edits, other apps'
switches, export, delete everything, the audit — need `admin`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from app.kernel.errors import BadRequestError, ByenatosError, NotFoundError, PermissionDeniedError
from app.kernel.gateway import web
from app.kernel.gateway.keys import KERNEL
from app.kernel.personal.hinata import HinataValidationError, parse_time
from app.kernel.personal.service import Caller, PersonalService

# The guard stores the authenticated AppIdentity under this request key (gateway/middleware.py).
APP_REQUEST_KEY = "app"
# Without the guard (route tests, or a gateway built without it) the caller names itself here.
APP_HEADER = "X-ByenatOS-App"
SCOPES_HEADER = "X-ByenatOS-Scopes"
DELETE_ALL_CONFIRM = "delete everything"
MAX_IMPORT_BYTES = 32 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def caller_of(request: web.Request) -> Caller:
    """Who is calling: the guard's AppIdentity, or (no guard) the app/scope headers."""
    if APP_REQUEST_KEY in request:
        ident = request[APP_REQUEST_KEY]
        if ident is None:
            raise PermissionDeniedError("this endpoint needs an app token")
        return Caller(ident.id, frozenset(ident.scopes))
    app = request.headers.get(APP_HEADER)
    scopes = frozenset(s.strip() for s in request.headers.get(SCOPES_HEADER, "").split(",") if s.strip())
    return Caller(app or None, scopes if app else frozenset({"admin"}))


def _kernel(request: web.Request) -> Any:
    return request.app[KERNEL]


def _personal(request: web.Request) -> PersonalService:
    return _kernel(request).personal


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error(status: int, message: str, code: str, **extra: Any) -> web.Response:
    kinds = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        409: "conflict_error",
        413: "invalid_request_error",
    }
    return _json(
        {"error": {"message": message, "type": kinds.get(status, "api_error"), "code": code, **extra}}, status
    )


def handles_errors(fn: Handler) -> Handler:
    """Typed errors → the API's JSON error with the right status (and field-level problems)."""

    @functools.wraps(fn)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except HinataValidationError as e:
            return error(400, str(e), e.code, problems=e.problems)
        except ByenatosError as e:
            status = e.status if 400 <= e.status < 600 else 500
            return error(status, str(e), e.code)

    return wrapper


def _need_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise PermissionDeniedError(f"{what} is the user's control: it needs the admin scope")


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise BadRequestError("request body is empty; send JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequestError(f"request body is not valid JSON: {e}") from None


# The largest whole number SQLite stores: a larger limit, offset or id would fail in the query.
MAX_INT = 2**63 - 1
MAX_PSP_BUDGET = 10_000_000  # tokens: more than any model's context window


def _int(request: web.Request, name: str, default: int, low: int = -MAX_INT, high: int = MAX_INT) -> int:
    v = request.query.get(name)
    if v is None:
        return default
    try:
        n = int(v)  # an empty `?limit=` is no number either
    except ValueError:
        raise BadRequestError(f"{name} must be a whole number") from None
    if not low <= n <= high:
        raise BadRequestError(f"{name} must be a whole number from {low} to {high}")
    return n


# -- HiNATA ------------------------------------------------------------------------------------


@handles_errors
async def post_hinata(request: web.Request) -> web.Response:
    caller = caller_of(request)
    if not (caller.admin or "hinata:write" in caller.scopes or APP_REQUEST_KEY in request):
        raise PermissionDeniedError("submitting records needs the hinata:write scope")
    results = await _personal(request).add(await _body(request), caller)
    status = 201 if any(r["status"] == "created" for r in results) else 200
    return _json({"data": results}, status)


@handles_errors
async def search_hinata(request: web.Request) -> web.Response:
    q = request.query
    result = await _personal(request).search(
        caller_of(request),
        text=q.get("q") or q.get("text") or None,
        phrase=q.get("phrase") or None,
        tag=q.get("tag") or None,
        source=q.get("source") or None,
        since=parse_time(q.get("since"), "since"),
        until=parse_time(q.get("until"), "until"),
        access=q.get("access"),  # an empty `?access=` is none of the three: a 400
        limit=_int(request, "limit", 20, 1, 200),
        offset=_int(request, "offset", 0, 0),
        mode=q.get("mode", "hybrid"),
    )
    return _json(result)


@handles_errors
async def get_hinata(request: web.Request) -> web.Response:
    return _json(await _personal(request).get(request.match_info["id"], caller_of(request)))


@handles_errors
async def delete_hinata(request: web.Request) -> web.Response:
    record_id = request.match_info["id"]
    await _personal(request).delete(record_id, caller_of(request))
    return _json({"deleted": record_id})


@handles_errors
async def import_hinata(request: web.Request) -> web.Response:
    """JSONL in the body (application/x-ndjson or text/plain), or JSON
    {"format": "jsonl", "content": "..."} / {"format": "markdown", "path": "/notes"} (user only)."""
    caller = caller_of(request)
    personal = _personal(request)
    if request.content_length and request.content_length > MAX_IMPORT_BYTES:
        return error(413, f"import body too large (limit {MAX_IMPORT_BYTES} bytes)", "body_too_large")
    ctype = request.content_type
    if ctype in ("application/x-ndjson", "application/jsonl", "text/plain"):
        report = await personal.import_jsonl((await request.read()).decode("utf-8", errors="replace"), caller)
        return _json(report.to_dict())
    body = await _body(request)
    if not isinstance(body, dict) or body.get("format") not in ("jsonl", "markdown"):
        raise BadRequestError(
            'send JSONL as application/x-ndjson, or {"format": "jsonl", "content": …} '
            'or {"format": "markdown", "path": …}'
        )
    if body["format"] == "jsonl":
        if not isinstance(body.get("content"), str):
            raise BadRequestError("content: the JSONL text")
        report = await personal.import_jsonl(body["content"], caller)
    else:
        _need_admin(caller, "importing a folder from this machine's disk")
        if not isinstance(body.get("path"), str) or not body["path"]:
            raise BadRequestError("path: the folder of Markdown notes")
        from pathlib import Path

        access = body.get("access")
        if access is not None and access not in ("private", "shared", "public"):
            raise BadRequestError("access must be private, shared or public")
        report = await personal.import_markdown(Path(body["path"]), caller, access=access)
    return _json(report.to_dict())


# -- PSP -----------------------------------------------------------------------------------------


@handles_errors
async def psp_preview(request: web.Request) -> web.Response:
    """Exactly what would be injected for an app (and why): the text and each item's scores."""
    caller = caller_of(request)
    personal = _personal(request)
    app = request.query.get("app") or caller.app
    if app != caller.app:
        _need_admin(caller, "previewing another app's PSP")
    if app is None:
        raise BadRequestError("app: which app's PSP to preview")
    scopes = caller.scopes if app == caller.app else _scopes_of(request, app)
    target = Caller(app, scopes - {"admin"} if app != caller.app else scopes)
    window = None
    model = request.query.get("model")
    if model:
        _, spec = _kernel(request).resolve(model)
        window = spec.context_window
    budget = _int(request, "budget", 0, 0, MAX_PSP_BUDGET) or None
    psp = await personal.build_psp(target, request.query.get("q", ""), budget=budget, context_window=window)
    data = psp.to_dict()
    data.update(app=app, injects=personal.injection(app) and not personal.paused, paused=personal.paused)
    return _json(data)


def _scopes_of(request: web.Request, app_id: str) -> frozenset[str]:
    """Another app's scopes (for the user's preview of it), from the app registry when there is one."""
    apps = getattr(_kernel(request), "apps", None)
    identity = apps.identity(app_id) if apps is not None and hasattr(apps, "identity") else None
    if identity is not None:
        return frozenset(identity.scopes)
    return frozenset({"hinata:read"}) if request.query.get("shared", "1") != "0" else frozenset()


@handles_errors
async def psp_status(request: web.Request) -> web.Response:
    return _json(await _personal(request).status())


@handles_errors
async def psp_pause(request: web.Request) -> web.Response:
    _need_admin(caller_of(request), "pausing personalization")
    _personal(request).set_paused(True)
    return _json({"paused": True})


@handles_errors
async def psp_resume(request: web.Request) -> web.Response:
    _need_admin(caller_of(request), "resuming personalization")
    _personal(request).set_paused(False)
    return _json({"paused": False})


@handles_errors
async def psp_apps(request: web.Request) -> web.Response:
    caller = caller_of(request)
    apps = _personal(request).apps()
    if not caller.admin:
        apps = {k: v for k, v in apps.items() if k == caller.app}
    return _json({"apps": apps})


@handles_errors
async def psp_set_app(request: web.Request) -> web.Response:
    """Turn injection on or off for an app: the user for any app, an app for itself (opt-in)."""
    caller = caller_of(request)
    app_id = request.match_info["app"]
    if app_id != caller.app:
        _need_admin(caller, "switching another app's PSP")
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("inject"), bool):
        raise BadRequestError('inject: true or false, e.g. {"inject": true}')
    _personal(request).set_injection(app_id, body["inject"])
    return _json({"app": app_id, "inject": body["inject"]})


@handles_errors
async def list_rules(request: web.Request) -> web.Response:
    return _json({"data": await _personal(request).rules(caller_of(request))})


@handles_errors
async def add_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    _need_admin(caller, "editing Core rules")
    body = await _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        raise BadRequestError('text: the rule, e.g. {"text": "Answer in British English", "pinned": true}')
    pinned = body.get("pinned", False)
    if not isinstance(pinned, bool):
        raise BadRequestError("pinned must be true or false")
    return _json(await _personal(request).add_rule(body["text"], pinned, caller), 201)


@handles_errors
async def patch_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    _need_admin(caller, "editing Core rules")
    rule_id = _rule_id(request)
    body = await _body(request)
    if not isinstance(body, dict):
        raise BadRequestError("send a JSON object with text and/or pinned")
    text, pinned = body.get("text"), body.get("pinned")
    if text is not None and not isinstance(text, str):
        raise BadRequestError("text must be a string")
    if pinned is not None and not isinstance(pinned, bool):
        raise BadRequestError("pinned must be true or false")
    return _json(await _personal(request).update_rule(rule_id, caller, text=text, pinned=pinned))


@handles_errors
async def delete_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    _need_admin(caller, "forgetting Core rules")
    rule_id = _rule_id(request)
    await _personal(request).delete_rule(rule_id, caller)
    return _json({"deleted": rule_id})


def _rule_id(request: web.Request) -> int:
    try:
        rule_id = int(request.match_info["id"])
    except ValueError:
        raise BadRequestError("a Core rule id is a number") from None
    if not 1 <= rule_id <= MAX_INT:
        raise NotFoundError(f"no Core rule {rule_id}")
    return rule_id


@handles_errors
async def export_all(request: web.Request) -> web.StreamResponse:
    caller = caller_of(request)
    _need_admin(caller, "exporting personal data")
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": 'attachment; filename="byenatos-personal.jsonl"',
        }
    )
    await response.prepare(request)
    async for chunk in _personal(request).export(caller):
        await response.write(chunk)
    await response.write_eof()
    return response


@handles_errors
async def delete_all(request: web.Request) -> web.Response:
    caller = caller_of(request)
    _need_admin(caller, "deleting all personal data")
    body = await _body(request)
    if not isinstance(body, dict) or body.get("confirm") != DELETE_ALL_CONFIRM:
        raise BadRequestError(
            f'this deletes every record, rule and vector: send {{"confirm": "{DELETE_ALL_CONFIRM}"}}'
        )
    n = await _personal(request).delete_all(caller)
    return _json({"deleted_records": n})


@handles_errors
async def audit_log(request: web.Request) -> web.Response:
    caller = caller_of(request)
    _need_admin(caller, "reading the personal-data audit")
    limit = _int(request, "limit", 100, 1, 1000)
    data = await _personal(request).audit_log(limit, request.query.get("app") or None)
    return _json({"data": data})


@handles_errors
async def settings(request: web.Request) -> web.Response:
    caller = caller_of(request)
    personal = _personal(request)
    if request.method == "PATCH":
        _need_admin(caller, "changing personalization settings")
        body = await _body(request)
        if not isinstance(body, dict):
            raise BadRequestError("send a JSON object of settings")
        _apply_settings(request, personal, body)
    return _json(
        {
            k: personal.setting(k)
            for k in ("paused", "enhance_with_model", "enhance_model", "psp_max_tokens", "embedding_model")
        }
    )


def _apply_settings(request: web.Request, personal: PersonalService, changes: dict[str, Any]) -> None:
    """All of the changes or none: a bad value later in the body undoes the ones before it."""
    kernel = _kernel(request)
    for key in ("enhance_model", "embedding_model"):
        model = changes.get(key)
        if (
            isinstance(model, str)
            and model.strip()
            and model != "local"
            and not kernel.socket.is_alias(model)
        ):
            # An unknown model is refused now (404, listing what exists), not found out by the
            # background worker that needs it, after the setting was saved.
            kernel.resolve(model)
    before = {key: personal.setting(key) for key in changes}
    done: list[str] = []
    try:
        for key, value in changes.items():
            personal.set_setting(key, value)
            done.append(key)
    except ByenatosError:
        for key in reversed(done):
            personal.set_setting(key, before[key])
        raise


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/hinata", post_hinata)
    r.add_get("/api/hinata", search_hinata)
    r.add_post("/api/hinata/import", import_hinata)
    # Record ids may hold '/' (a URL, a path): the id is the rest of the path, %2F-encoded or not.
    r.add_get("/api/hinata/{id:.+}", get_hinata)
    r.add_delete("/api/hinata/{id:.+}", delete_hinata)
    r.add_get("/api/psp/preview", psp_preview)
    r.add_get("/api/psp/status", psp_status)
    r.add_post("/api/psp/pause", psp_pause)
    r.add_post("/api/psp/resume", psp_resume)
    r.add_get("/api/psp/apps", psp_apps)
    r.add_put("/api/psp/apps/{app}", psp_set_app)
    r.add_get("/api/psp/rules", list_rules)
    r.add_post("/api/psp/rules", add_rule)
    r.add_patch("/api/psp/rules/{id}", patch_rule)
    r.add_delete("/api/psp/rules/{id}", delete_rule)
    r.add_get("/api/psp/export", export_all)
    r.add_post("/api/psp/delete-all", delete_all)
    r.add_get("/api/psp/audit", audit_log)
    r.add_get("/api/psp/settings", settings)
    r.add_patch("/api/psp/settings", settings)
