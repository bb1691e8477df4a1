"""OpenAI-compatible routes: chat completions, completions, embeddings, models.

Chat is the fast path: the body is checked cheaply (no pydantic), handed to the kernel as
OpenAI JSON and the answer (or the SSE bytes) goes back as the backend sent it. Backends that
speak another protocol are translated inside the kernel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from typing import TYPE_CHECKING, Any

import orjson

from app.kernel import sse
from app.kernel.errors import ByenatosError, ModelNotFoundError
from app.kernel.gateway import personalize, web
from app.kernel.gateway.bodies import check_chat, check_completion, check_embedding, read_json
from app.kernel.gateway.errors import openai_stream_error
from app.kernel.gateway.keys import AUDIT_PROMPTS, KERNEL, LANE_OPENING, SSE_HEADERS
from app.kernel.gateway.middleware import APP_KEY, CTX_KEY
from app.kernel.monitor.accounting import RequestContext
from app.kernel.security.apps import AppIdentity

if TYPE_CHECKING:
    from app.kernel.streams import ObservedStream

__all__ = ["KERNEL", "add_routes"]

_JSON = "application/json"


def _json(data: Any, headers: dict[str, str] | None = None, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=_JSON, headers=headers)


# -- models ----------------------------------------------------------------------------------
def model_ids(kernel) -> list[tuple[str, str]]:
    """(id, owner) of every name a client may put in `model`: socket aliases first, then models."""
    try:
        aliases = [a.config.alias for a in kernel.socket.aliases()]
    except ByenatosError:
        aliases = []
    names = ["default", *sorted(a for a in aliases if a != "default")]
    return [(a, "byenatos") for a in names] + [(m.id, m.provider) for m in kernel.list_models()]


def _anthropic_model(mid: str) -> dict[str, Any]:
    return {"type": "model", "id": mid, "display_name": mid, "created_at": "1970-01-01T00:00:00Z"}


async def list_models(request: web.Request) -> web.Response:
    ids = model_ids(request.app[KERNEL])
    if "anthropic-version" in request.headers:  # the Anthropic SDKs list models here too, in their shape
        data = [_anthropic_model(mid) for mid, _ in ids]
        return _json(
            {
                "data": data,
                "has_more": False,
                "first_id": ids[0][0] if ids else None,
                "last_id": ids[-1][0] if ids else None,
            }
        )
    data = [{"id": mid, "object": "model", "created": 0, "owned_by": owner} for mid, owner in ids]
    return _json({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    wanted = request.match_info["model_id"]
    ids = model_ids(request.app[KERNEL])
    for mid, owner in ids:
        if mid == wanted:
            if "anthropic-version" in request.headers:
                return _json(_anthropic_model(mid))
            return _json({"id": mid, "object": "model", "created": 0, "owned_by": owner})
    known = ", ".join(mid for mid, _ in ids[:30]) or "none"
    raise ModelNotFoundError(
        f"unknown model {wanted!r}; available: {known}", available=[mid for mid, _ in ids]
    )


# -- chat ------------------------------------------------------------------------------------
async def chat_completions(request: web.Request) -> web.StreamResponse:
    kernel = request.app[KERNEL]
    app: AppIdentity = request[APP_KEY]
    ctx: RequestContext = request[CTX_KEY]
    body = await read_json(request)
    ctx.model = check_chat(body)
    stream = ctx.stream = body.get("stream") is True
    if request.app[AUDIT_PROMPTS]:
        ctx.prompt = orjson.dumps(body["messages"]).decode()
    version = await personalize.apply(kernel, app.id, app.scopes, body)
    headers = {personalize.PSP_VERSION_HEADER: version} if version else None
    if not stream:
        return _json(await kernel.chat_raw(body, app=app.id, opening=request.get(LANE_OPENING)), headers)
    options = body.get("stream_options")
    wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    # Unasked, the usage chunk is still requested (budgets and the audit need the counts) and
    # kept from the client.
    events = await kernel.stream_raw(body, app=app.id, meter=not wants_usage, opening=request.get(LANE_OPENING))
    return await relay_sse(request, events, headers, drop_usage_chunk=not wants_usage)


async def relay_sse(
    request: web.Request,
    events: ObservedStream[bytes],
    headers: dict[str, str] | None,
    *,
    drop_usage_chunk: bool = False,
) -> web.StreamResponse:
    """Send SSE events as they come. An error before the first event is a normal JSON error
    (raised to the middleware); after it, an `error` event the OpenAI SDKs raise as APIError."""
    try:
        first = await anext(events, None)
    except BaseException:
        await events.aclose()
        raise
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
    try:
        await response.prepare(request)
        batch = first
        while batch is not None:
            if drop_usage_chunk and (sse.USAGE_ONLY[0] in batch or sse.USAGE_ONLY[1] in batch):
                batch = sse.drop_events_with(batch, sse.USAGE_ONLY)
            if sse.ends_with_done(batch):
                # The answer is complete: it goes out with the end of the body in one write, and
                # the request is recorded as served. Only then is the upstream's tail read (its
                # terminating chunk often comes in a packet of its own): the client does not wait
                # for it, and whatever it holds is not for the client.
                await response.write_eof(batch)
                events.complete()
                # A server that never ends its body after [DONE] must not hold this connection's
                # next request for a whole read timeout: the tail gets a few seconds, then the
                # upstream connection is closed (by aclose below).
                with contextlib.suppress(ByenatosError, TimeoutError):
                    async with asyncio.timeout(sse.TAIL_TIMEOUT_S):
                        async for _ in events:
                            pass
                break
            if batch:
                await response.write(batch)  # one write per batch: see app.kernel.sse
            batch = await anext(events, None)
    except ByenatosError as e:
        await response.write(openai_stream_error(e))
    finally:
        await events.aclose()  # client gone or done: stop the upstream now
    await response.write_eof()
    return response


# -- legacy completions ------------------------------------------------------------------------
async def completions(request: web.Request) -> web.StreamResponse:
    """`/v1/completions`, routed like chat (aliases, fallbacks): passed through to backends that
    speak OpenAI, served through chat by the others (app.kernel.compat.completions)."""
    kernel = request.app[KERNEL]
    app: AppIdentity = request[APP_KEY]
    ctx: RequestContext = request[CTX_KEY]
    body = await read_json(request)
    ctx.model = check_completion(body)
    ctx.stream = body.get("stream") is True
    if not ctx.stream:
        return _json(await kernel.chat_raw(body, app=app.id, legacy=True))
    events = await kernel.stream_raw(body, app=app.id, legacy=True)
    return await relay_sse(request, events, None)


# -- embeddings --------------------------------------------------------------------------------
async def embeddings(request: web.Request) -> web.Response:
    kernel = request.app[KERNEL]
    ctx: RequestContext = request[CTX_KEY]
    body = await read_json(request)
    model, texts = check_embedding(body)
    ctx.model = model
    _, spec = kernel.resolve(model)
    ctx.model, ctx.provider = spec.id, spec.provider
    result = await kernel.embed(texts, model)
    ctx.prompt_tokens = result.usage.prompt_tokens
    ctx.cost = ctx.prompt_tokens * spec.input_cost_per_token
    as_base64 = body.get("encoding_format") == "base64"  # the openai SDK's default
    data = []
    for i, vector in enumerate(result.vectors):
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    usage = {"prompt_tokens": ctx.prompt_tokens, "total_tokens": ctx.prompt_tokens}
    return _json({"object": "list", "data": data, "model": result.model, "usage": usage})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
