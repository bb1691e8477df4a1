"""The OpenAI Responses API: /v1/responses (stream and not), GET/DELETE by id, input_items.

Served by whatever the request's model names (the socket's `default`, an alias or a model id)
through the canonical request: `app.kernel.responses` translates the body and the stored
history of its `previous_response_id` chain into a chat body, the kernel routes it like any
chat (`chat_raw` / `stream_raw`: fallbacks, the scheduler, budgets, accounting), and the answer
comes back as a response object or its typed events. The PSP is applied as for chat. With
`store` (the default, as at OpenAI) the response is written before it is sent back; every
read is scoped to the calling app.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from app.kernel import responses
from app.kernel.errors import ByenatosError
from app.kernel.gateway import personalize, web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import AUDIT_PROMPTS, CLOSERS, KERNEL, LANE, LANE_OPENING, SSE_HEADERS
from app.kernel.gateway.middleware import APP_KEY, CTX_KEY
from app.kernel.gateway.responses_lane import ResponsesLane
from app.kernel.monitor.accounting import RequestContext
from app.kernel.security.apps import AppIdentity
from app.kernel.socket.sessions import trim_to_window
from app.kernel.sse import TAIL_TIMEOUT_S
from app.kernel.streams import ObservedStream

STORE = web.AppKey("responses_store", responses.ResponseStore)
_JSON = "application/json"
_RESERVE = 1024  # tokens kept for the answer when trimming (truncation: auto) without max_output_tokens


def _json(data: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type=_JSON, headers=headers)


async def create(request: web.Request) -> web.StreamResponse:
    """Create a model response (stream: true for typed server-sent events)"""
    kernel = request.app[KERNEL]
    store = request.app[STORE]
    app: AppIdentity = request[APP_KEY]
    ctx: RequestContext = request[CTX_KEY]
    body = await read_json(request)
    previous, keep, stream = responses.head(body)
    history = store.context(previous, app=app.id) if previous else []
    turn = responses.translate(body, history)
    chat = turn.chat
    ctx.model, ctx.stream = chat["model"], stream
    if request.app[AUDIT_PROMPTS]:
        ctx.prompt = orjson.dumps(chat["messages"]).decode()
    if turn.echo["truncation"] == "auto":
        _, spec = kernel.resolve(chat["model"])
        reserve = chat.get("max_tokens") or min(_RESERVE, spec.context_window // 4)
        chat["messages"] = trim_to_window(chat["messages"], spec, reserve_output=reserve)
    version = await personalize.apply(kernel, app.id, app.scopes, chat)
    headers = {personalize.PSP_VERSION_HEADER: version} if version else None
    shell = responses.shell(responses.new_response_id(), chat["model"], turn.echo, previous=previous, store=keep)

    async def save(response: dict[str, Any], served: str, message: dict[str, Any]) -> None:
        if keep:
            await store.save(response, app=app.id, model=served, items=turn.items,
                             messages=[*turn.messages, message])

    if not stream:
        answer = await kernel.chat_raw(chat, app=app.id, opening=request.get(LANE_OPENING))
        done = responses.from_chat(answer, shell)
        await save(done.response, str(answer.get("model") or chat["model"]), done.message)
        return _json(done.response, headers)
    events = await kernel.stream_raw({**chat, "stream": True}, app=app.id, meter=True,
                                    opening=request.get(LANE_OPENING))
    return await _relay(request, events, responses.ResponseStream(shell), save, headers)


async def _relay(request: web.Request, events: ObservedStream[bytes], encoder: responses.ResponseStream,
                 save: Any, headers: dict[str, str] | None) -> web.StreamResponse:
    """The chat stream's batches as Responses events. An error before the first batch is a JSON
    error (raised to the guard); after it, `error` and `response.failed` events."""
    try:
        first = await anext(events, None)
    except BaseException:
        await events.aclose()
        raise
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
    unsent = encoder.start()  # written with the first batch's events: one write
    try:
        await response.prepare(request)
        if first is not None:
            unsent += encoder.feed(first)
        await response.write(unsent)
        unsent = b""
        while first is not None and not encoder.done:
            batch = await anext(events, None)
            if batch is None:
                break
            out = encoder.feed(batch)
            if out:
                await response.write(out)
        events.complete()  # the whole answer is in: recorded as served
        tail, message = encoder.finish()
        await save(encoder.response, events.served_by.id, message)  # durable before the client hears it is done
        await response.write_eof(tail + encoder.completed())
        # The upstream's end of body (often a packet of its own) is read after the client has
        # everything, so its connection can be kept alive; a few seconds at most.
        with contextlib.suppress(ByenatosError, TimeoutError):
            async with asyncio.timeout(TAIL_TIMEOUT_S):
                async for _ in events:
                    pass
    except ByenatosError as e:
        await response.write(unsent + encoder.failed(e.code, str(e)))
    finally:
        await events.aclose()  # client gone or done: stop the upstream now
    await response.write_eof()
    return response


async def get_response(request: web.Request) -> web.Response:
    """Retrieve a stored response (this app's only)"""
    app: AppIdentity = request[APP_KEY]
    return _json(request.app[STORE].get(request.match_info["response_id"], app=app.id))


async def delete_response(request: web.Request) -> web.Response:
    """Delete a stored response (this app's only)"""
    app: AppIdentity = request[APP_KEY]
    response_id = request.match_info["response_id"]
    request.app[STORE].delete(response_id, app=app.id)
    return _json({"id": response_id, "object": "response.deleted", "deleted": True})


async def input_items(request: web.Request) -> web.Response:
    """The input items of a stored response, paginated as OpenAI pages them"""
    app: AppIdentity = request[APP_KEY]
    q = request.query
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise RequestError("limit must be an integer between 1 and 100", param="limit") from None
    page = request.app[STORE].input_items(request.match_info["response_id"], app=app.id, limit=limit,
                                          order=q.get("order", "desc"), after=q.get("after"),
                                          before=q.get("before"))
    return _json(page.to_dict())


def add_routes(app: web.Application) -> None:
    store = app[STORE] = responses.ResponseStore()
    app.setdefault(CLOSERS, []).append(store.close)  # its writer thread, when the gateway stops
    try:
        lane = app[LANE]
    except KeyError:  # gateway.fast_lane = false
        pass
    else:  # the pass-through lane serves the plainest Responses requests from now on
        lane.responses = ResponsesLane(store)
    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{response_id}", get_response)
    app.router.add_delete("/v1/responses/{response_id}", delete_response)
    app.router.add_get("/v1/responses/{response_id}/input_items", input_items)
