"""OpenAI-compatible routes: /v1/chat/completions and /v1/models."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from pydantic import ValidationError

from app.kernel.canonical import ChatRequest
from app.kernel.errors import ByenatosError
from app.kernel.gateway.errors import (
    openai_error,
    openai_error_from,
    openai_error_payload,
    validation_message,
)
from app.kernel.kernel import DEFAULT_ALIASES, Kernel

log = logging.getLogger(__name__)

KERNEL = web.AppKey("kernel", Kernel)
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def read_json(request: web.Request) -> dict | web.Response:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        return openai_error(413, f"request body too large (limit {e.max_size} bytes)", code="body_too_large")
    if not raw:
        return openai_error(400, "request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return openai_error(400, f"request body is not valid JSON: {e}", code="invalid_json")
    if not isinstance(body, dict):
        return openai_error(400, "request body must be a JSON object", code="invalid_json")
    return body


async def list_models(request: web.Request) -> web.Response:
    kernel = request.app[KERNEL]
    data = [{"id": "default", "object": "model", "created": 0, "owned_by": "byenatos"}]
    data += [{"id": m.id, "object": "model", "created": 0, "owned_by": m.provider} for m in kernel.list_models()]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def chat_completions(request: web.Request) -> web.StreamResponse:
    kernel = request.app[KERNEL]
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    try:
        chat = ChatRequest.model_validate(body)
    except ValidationError as e:
        return openai_error(400, validation_message(e), code="invalid_request")
    if not chat.messages:
        return openai_error(400, "messages must contain at least one message", param="messages")
    if not chat.stream:
        try:
            answer = await kernel.chat(chat)
        except ByenatosError as e:
            return openai_error_from(e)
        if chat.model not in DEFAULT_ALIASES:
            answer.model = chat.model
        return web.Response(body=answer.model_dump_json(exclude_none=True), content_type="application/json")
    try:
        chunks = await kernel.stream(chat)
    except ByenatosError as e:
        return openai_error_from(e)
    return await _stream_sse(request, chunks)


async def _stream_sse(request: web.Request, chunks) -> web.StreamResponse:
    """Send chunks as SSE. An error before the first byte is a normal JSON error response."""
    response: web.StreamResponse | None = None
    try:
        async for chunk in chunks:
            if response is None:
                response = web.StreamResponse(headers=SSE_HEADERS)
                await response.prepare(request)
            await response.write(b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n")
    except ByenatosError as e:
        if response is None:
            return openai_error_from(e)
        # Headers are sent: the OpenAI SDKs surface an `error` event as an APIError.
        await response.write(b"data: " + openai_error_payload(e) + b"\n\n")
        return response
    finally:
        await chunks.aclose()  # client gone or done: stop the upstream now
    if response is None:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat_completions)
