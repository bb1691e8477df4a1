"""Anthropic-compatible routes: /v1/messages (stream and not) and /v1/messages/count_tokens.

Served by whatever model the name resolves to (the socket's `default`, or any model id):
the compatibility layer turns the Anthropic request into the canonical one, and the answer
or the stream back into Anthropic's shapes, so Anthropic's SDKs work over any backend.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.kernel import tokens
from app.kernel.canonical import ChatRequest
from app.kernel.compat.anthropic import AnthropicStreamEncoder, from_anthropic_request, to_anthropic_response
from app.kernel.errors import ByenatosError
from app.kernel.gateway import personalize, web
from app.kernel.gateway.bodies import check_anthropic, read_json
from app.kernel.gateway.keys import AUDIT_PROMPTS, KERNEL, SSE_HEADERS
from app.kernel.gateway.middleware import APP_KEY, CTX_KEY
from app.kernel.monitor.accounting import RequestContext
from app.kernel.security.apps import AppIdentity


async def messages(request: web.Request) -> web.StreamResponse:
    kernel = request.app[KERNEL]
    app: AppIdentity = request[APP_KEY]
    ctx: RequestContext = request[CTX_KEY]
    body = await read_json(request)
    check_anthropic(body)
    chat = from_anthropic_request(body)  # BadRequestError names the field
    ctx.model, ctx.stream = chat.model, chat.stream
    if request.app[AUDIT_PROMPTS]:
        ctx.prompt = orjson.dumps([m.model_dump(exclude_none=True) for m in chat.messages]).decode()
    canonical = chat.wire_dict()
    version = await personalize.apply(kernel, app.id, app.scopes, canonical)
    if version:
        chat = ChatRequest.model_validate(canonical)  # the PSP changed the messages
    headers = {personalize.PSP_VERSION_HEADER: version} if version else {}
    if not chat.stream:
        answer = await kernel.chat(chat, app=app.id)
        reply = to_anthropic_response(answer, model=body["model"])
        return web.Response(body=orjson.dumps(reply), content_type="application/json", headers=headers)
    chunks = await kernel.stream(chat, app=app.id)  # errors before the first chunk raise here
    encoder = AnthropicStreamEncoder(model=body["model"])
    response = web.StreamResponse(headers={**SSE_HEADERS, **headers})
    try:
        await response.prepare(request)
        await response.write(encoder.start())
        async for chunk in chunks:
            out = encoder.feed(chunk)
            if out:
                await response.write(out)
        await response.write(encoder.finish())
    except ByenatosError as e:
        await response.write(encoder.error(e))  # the SDKs raise an `event: error` as an APIError
    finally:
        await chunks.aclose()  # client gone or done: stop the upstream now
    await response.write_eof()
    return response


async def count_tokens(request: web.Request) -> web.Response:
    """Tokens the request's prompt takes with the tokenizer of the model it would go to."""
    kernel = request.app[KERNEL]
    body = await read_json(request)
    check_anthropic(body)
    chat = from_anthropic_request({**body, "max_tokens": 1})  # count_tokens takes no max_tokens
    _, spec = kernel.resolve(chat.model)
    await tokens.warm_up(spec)  # the first count for a tokenizer family builds it off the loop
    messages: list[Any] = [m.model_dump(exclude_none=True) for m in chat.messages]
    n = tokens.count_tokens(spec, messages)
    if chat.tools:
        n += tokens.count_tokens(spec, orjson.dumps(chat.tools).decode())
    return web.Response(body=orjson.dumps({"input_tokens": n}), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
