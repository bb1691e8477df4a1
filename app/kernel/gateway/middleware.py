"""The gateway's guard: every request passes here before a handler sees it.

In order: the Host header (DNS rebinding, as in Ollama's CVE-2024-28224), the browser
Origin (CORS allow list, preflights answered here), the route (unknown → 404 in the caller's
format), the bearer token and its scopes, the app's rate limit and budgets on inference
routes. Then the handler runs with a `RequestContext` current, and whatever it raises comes
back in the caller's API format. Inference requests the kernel never saw (refused, invalid)
are still accounted: the guard publishes their `RequestFinished` itself.

One middleware rather than a chain: each layer of aiohttp middleware costs a call on every
request, and the fast path's budget is a fraction of a millisecond.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pydantic import ValidationError

from app.kernel.agents import RUN_HEADER
from app.kernel.errors import ByenatosError
from app.kernel.events import RequestFinished
from app.kernel.gateway import web
from app.kernel.gateway.errors import error_from, error_response, family_of, validation_message
from app.kernel.gateway.keys import LANE_OPENING
from app.kernel.loopback import LOOPBACK_HOSTS
from app.kernel.monitor.accounting import RequestContext, current_request
from app.kernel.scheduler import PRIORITY_HEADER, Program, ProgramClass, current_program
from app.kernel.scheduler.program import lowered
from app.kernel.security.apps import AppIdentity

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

log = logging.getLogger(__name__)

PUBLIC, AUTHENTICATED, REGISTER = "public", "authenticated", "register"
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
                             "/v1/responses"})
APP_KEY = "app"  # request[APP_KEY]: the AppIdentity, when authenticated
CTX_KEY = "ctx"  # request[CTX_KEY]: the RequestContext
_READ = ("GET", "HEAD")
CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = (
    "Authorization, Content-Type, X-Api-Key, Anthropic-Version, Anthropic-Beta, OpenAI-Organization"
)
EXPOSED_HEADERS = "Retry-After, X-ByenatOS-PSP-Version"


def required_scope(method: str, path: str) -> str:
    """What a request needs: a scope name, AUTHENTICATED (any valid token), PUBLIC or REGISTER.

    Deny by default: a route not named here needs the admin scope.
    """
    if path.startswith("/v1/"):
        return "chat"
    if path in ("/api/health", "/openapi.json"):
        return PUBLIC
    if path == "/api/apps/register":
        return REGISTER
    if path in ("/api/apps/me", "/api/usage"):
        return AUTHENTICATED
    if path == "/api/socket" or path.startswith("/api/socket/"):
        return "chat" if method in _READ else "admin"
    if path == "/api/hinata" or path.startswith("/api/hinata/"):
        return "hinata:read" if method in _READ else "hinata:write"
    if path == "/api/psp" or path.startswith("/api/psp/"):
        return "psp:read"
    if path == "/api/models" and method in _READ:
        return "chat"
    if path == "/api/agents" or path.startswith("/api/agents/"):
        # Reads too: an agent acts with the user's tools (some with all of the user's memory),
        # and its log shows what it read. No finer scope until apps run agents of their own.
        return "admin"
    if path == "/api/scheduler":
        return "admin"  # it names every program (apps, agents) and what each has used
    if path == "/mcp":
        return AUTHENTICATED  # each MCP tool and resource checks its own scope (app.kernel.mcp_server)
    if path == "/api/sessions" or path.startswith("/api/sessions/"):
        return "chat"  # an app's own conversations (sessions_routes: each app sees only its own)
    return "admin"


def is_session_turn(path: str) -> bool:
    """POST /api/sessions/{id}/messages: a turn of a session, served by a model like a chat."""
    return path.startswith("/api/sessions/") and path.endswith("/messages")


def host_name(host: str) -> str:
    """`localhost:8484` → `localhost`, `[::1]:8484` → `[::1]`, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def token_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("X-Api-Key") or None  # the Anthropic SDKs send their key here


class Guard:
    def __init__(self, kernel: Kernel, bound_host: str) -> None:
        settings = kernel.settings.gateway
        hosts = set(LOOPBACK_HOSTS) | {h.strip().lower() for h in settings.allowed_hosts if h.strip()}
        if bound_host not in ("0.0.0.0", "::", ""):
            hosts.add(host_name(f"[{bound_host}]" if ":" in bound_host else bound_host))
        self.hosts = frozenset(hosts)
        self.origins = frozenset(o.rstrip("/") for o in settings.allowed_origins)
        self.kernel = kernel
        self.apps = kernel.apps
        self.accounting = kernel.accounting
        self.scheduler = kernel.router.scheduler

    @web.middleware
    async def middleware(self, request: web.Request, handler) -> web.StreamResponse:
        path = request.path
        family = family_of(path)
        host = request.headers.get("Host")
        if host is not None and host_name(host) not in self.hosts:
            return error_response(
                family,
                403,
                f"requests for host {host!r} are refused (DNS rebinding protection); "
                "use 127.0.0.1 or localhost, or add the name to gateway.allowed_hosts in the settings",
                code="host_not_allowed",
            )
        origin = request.headers.get("Origin")
        cors: dict[str, str] | None = None
        if origin is not None:
            if origin.rstrip("/") not in self.origins:
                return error_response(
                    family,
                    403,
                    f"cross-origin requests from {origin!r} are refused; "
                    "add the origin to gateway.allowed_origins in the settings to allow it",
                    code="origin_not_allowed",
                )
            cors = {
                "Access-Control-Allow-Origin": origin,
                "Vary": "Origin",
                "Access-Control-Expose-Headers": EXPOSED_HEADERS,
            }
            if request.method == "OPTIONS":
                return web.Response(
                    status=204,
                    headers={
                        **cors,
                        "Access-Control-Allow-Methods": CORS_METHODS,
                        "Access-Control-Max-Age": "600",
                        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers")
                        or CORS_HEADERS,
                    },
                )
        response = await self._route(request, handler, path, family)
        if cors is not None and not response.prepared:
            response.headers.update(cors)
        return response

    async def _route(self, request: web.Request, handler, path: str, family) -> web.StreamResponse:
        missing = request.match_info.http_exception
        if missing is not None:
            code = "not_found" if missing.status == 404 else "method_not_allowed"
            headers = {"Allow": missing.headers["Allow"]} if "Allow" in missing.headers else None
            return error_response(
                family,
                missing.status,
                f"{request.method} {path}: {missing.reason}",
                code=code,
                headers=headers,
            )
        inference = request.method == "POST" and (path in INFERENCE_PATHS or is_session_turn(path))
        ctx = RequestContext(app=None, endpoint=path, after_answer=True)
        request[CTX_KEY] = ctx
        reset = current_request.set(ctx)
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        try:
            response = await self._authorized(request, handler, path, family, ctx, inference)
        except ByenatosError as e:
            response = error_from(family, e)
        except ValidationError as e:  # a shape pydantic refused deeper in (translation, fallbacks)
            response = error_response(family, 400, validation_message(e), code="invalid_request")
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = error_response(family, e.status, e.reason, code="http_error")
        finally:
            if inference and not ctx.accounted:
                self._account(ctx, response, started)  # while ctx is current: the audit row pairs with it
            current_request.reset(reset)
        return response

    async def _authorized(
        self, request: web.Request, handler, path: str, family, ctx: RequestContext, inference: bool
    ) -> web.StreamResponse:
        need = required_scope(request.method, path)
        if need == PUBLIC:
            return await handler(request)
        app: AppIdentity | None = None
        token = token_of(request)
        if token is not None:
            app = self.apps.authenticate(token)
            if app is None:
                return error_response(family, 401, "invalid or revoked API token", code="invalid_token")
        elif need != REGISTER:
            return error_response(
                family,
                401,
                "missing API token: send `Authorization: Bearer <token>`; get one with "
                "`byenatos apps register NAME` or POST /api/apps/register",
                code="missing_token",
            )
        if app is not None:
            ctx.app = app.id
            if need not in (AUTHENTICATED, REGISTER) and not app.allows(need):
                return error_response(
                    family,
                    403,
                    f"app {app.id!r} lacks the {need!r} scope for {request.method} {path}",
                    code="missing_scope",
                )
            if inference and request.get(LANE_OPENING) is None:  # the lane checked a request it hands over
                self.accounting.check(app)
        request[APP_KEY] = app
        if inference and app is not None:
            # The request's LLM calls are the app's program's (app.kernel.scheduler): the app
            # itself, interactive, unless it runs as an agent or lowers this request.
            run = request.headers.get(RUN_HEADER)
            if run is not None:
                # An external agent's run: one process of the agent kernel, its calls accounted
                # and scheduled as that process's (refused while it is suspended or ended).
                proc = self.kernel.agents.external_call(app.id, run)
                ctx.agent_pid = proc.pid
                program = lowered(Program(f"{app.id}#{proc.pid}", ProgramClass.NORMAL),
                                  request.headers.get(PRIORITY_HEADER), admin=app.is_admin)
            else:
                program = self.scheduler.program_for_app(
                    app.id, header=request.headers.get(PRIORITY_HEADER), admin=app.is_admin
                )
            reset = current_program.set(program)
            try:
                return await handler(request)
            finally:
                current_program.reset(reset)
        return await handler(request)

    def _account(self, ctx: RequestContext, response: web.StreamResponse | None, started: float) -> None:
        """Publish the RequestFinished the kernel did not: refused, invalid or not routed."""
        if response is None:
            outcome = "cancelled"
        else:
            outcome = response.get("outcome") or (
                "ok" if response.status < 400 else f"http_{response.status}"
            )
        self.kernel.events.publish(
            RequestFinished(
                model=ctx.model,
                provider=ctx.provider,
                app=ctx.app,
                stream=ctx.stream,
                latency_ms=(time.perf_counter() - started) * 1000,
                prompt_tokens=ctx.prompt_tokens,
                completion_tokens=ctx.completion_tokens,
                cost=ctx.cost,
                outcome=outcome,
            )
        )
