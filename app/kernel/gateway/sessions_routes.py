"""/api/sessions: the kernel's Conversations for apps (the seeds' virtual sessions).

A session talks to a socket alias, keeps its history in SQLite and carries on across a swap
on whatever the alias serves then, its history trimmed to that model's window by a real
token count (`app.kernel.socket.conversations`). These routes add the API's scopes and errors:
a session belongs to the app that created it, and to every other app it does not exist (404).
Turns (`POST …/messages`) are inference: the guard applies the app's budgets and scheduling.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from app.kernel.canonical import ChatMessage
from app.kernel.errors import ByenatosError, NotFoundError
from app.kernel.gateway import web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError, openai_stream_error, validation_message
from app.kernel.gateway.keys import KERNEL, SSE_HEADERS
from app.kernel.gateway.middleware import APP_KEY, CTX_KEY
from app.kernel.monitor.accounting import RequestContext
from app.kernel.security.apps import AppIdentity
from app.kernel.socket.conversations import Conversations
from app.kernel.socket.sessions import Session

# What a turn may set besides its message: the chat options that make sense per turn.
_NUMBERS = ("temperature", "top_p")
_INTEGERS = ("max_tokens", "seed")
_PASSED = ("stop", "response_format", "tools", "tool_choice")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def session_dict(s: Session) -> dict[str, Any]:
    return {"id": s.id, "object": "session", "alias": s.alias, "metadata": s.metadata, "open": s.open,
            "created_at": s.created_at, "updated_at": s.updated_at, "closed_at": s.closed_at,
            "message_count": s.message_count}


def _conversations(request: web.Request) -> Conversations:
    return request.app[KERNEL].conversations


def _own(request: web.Request) -> Session:
    """The session named in the path, if it is the calling app's; not found otherwise."""
    app: AppIdentity = request[APP_KEY]
    session_id = request.match_info["session_id"]
    try:
        session = _conversations(request).store.get(session_id)
    except NotFoundError:
        session = None
    if session is None or session.app != app.id:
        raise NotFoundError(f"no session {session_id!r} (sessions are seen only by the app that created them)")
    return session


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise RequestError(f"{name} must be a string", param=name)
    return value


def _metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("metadata")
    if value is not None and not isinstance(value, dict):
        raise RequestError("metadata must be a JSON object", param="metadata")
    return value


async def create(request: web.Request) -> web.Response:
    """Open a session with a socket alias (its system prompt and metadata optional)"""
    app: AppIdentity = request[APP_KEY]
    body = await read_json(request)
    alias = body.get("alias", "default")
    if not isinstance(alias, str) or not alias:
        raise RequestError("alias must be a socket alias such as 'default'", param="alias")
    session = _conversations(request).create(alias, app=app.id, system=_text(body, "system"),
                                             metadata=_metadata(body))
    return _json(session_dict(session), status=201)


async def list_sessions(request: web.Request) -> web.Response:
    """This app's sessions, most recently active first (`?closed=true` adds closed ones)"""
    app: AppIdentity = request[APP_KEY]
    closed = request.query.get("closed", "false")
    if closed not in ("true", "false"):
        raise RequestError("closed must be true or false", param="closed")
    sessions = _conversations(request).store.list(app=app.id, open_only=closed == "false")
    return _json({"object": "list", "data": [session_dict(s) for s in sessions]})


async def get_session(request: web.Request) -> web.Response:
    """One of this app's sessions"""
    return _json(session_dict(_own(request)))


async def update(request: web.Request) -> web.Response:
    """Update a session's context: its system prompt, its metadata, messages added unanswered"""
    session = _own(request)
    body = await read_json(request)
    messages = body.get("messages")
    if messages is not None:
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise RequestError("messages must be a list of messages (objects with a role)", param="messages")
        for i, m in enumerate(messages):  # all checked before any is stored
            try:
                ChatMessage.model_validate(m)
            except ValidationError as e:
                raise RequestError(f"messages[{i}]: {validation_message(e)}", param=f"messages[{i}]") from None
    updated = _conversations(request).update_context(session.id, system=_text(body, "system"),
                                                     metadata=_metadata(body), messages=messages)
    return _json(session_dict(updated))


async def history(request: web.Request) -> web.Response:
    """The session's messages, oldest first, each with the model that answered it"""
    session = _own(request)
    turns = _conversations(request).store.turns(session.id)
    data = [{"seq": t.seq, "message": t.message, "model": t.model, "created_at": t.created_at} for t in turns]
    return _json({"object": "list", "session": session.id, "data": data})


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in _NUMBERS:
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestError(f"{name} must be a number", param=name)
            options[name] = value
    for name in _INTEGERS:
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RequestError(f"{name} must be a positive integer", param=name)
            options[name] = value
    options.update({name: body[name] for name in _PASSED if body.get(name) is not None})
    return options


async def say(request: web.Request) -> web.StreamResponse:
    """One turn: the message is stored, the alias's current model answers (stream: true for SSE)"""
    session = _own(request)
    ctx: RequestContext = request[CTX_KEY]
    body = await read_json(request)
    message = body.get("message")
    if not (isinstance(message, str) and message) and not (isinstance(message, dict) and message.get("role")):
        raise RequestError("message must be a non-empty string or a message object with a role", param="message")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false", param="stream")
    options = _options(body)
    ctx.model, ctx.stream = session.alias, stream
    conversations = _conversations(request)
    if not stream:
        answer, spec = await conversations.say(session.id, message, **options)
        return _json({"object": "session.turn", "session": session.id, "model": spec.id,
                      "message": answer.message.model_dump(exclude_none=True),
                      "finish_reason": answer.finish_reason,
                      "usage": answer.usage.model_dump() if answer.usage else None})
    chunks = await conversations.say_streaming(session.id, message, **options)
    response = web.StreamResponse(headers=SSE_HEADERS)
    try:
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
    except ByenatosError as e:
        await response.write(openai_stream_error(e))
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


async def close(request: web.Request) -> web.Response:
    """End a session (its history stays readable; a SESSION_AWARE swap waits for this)"""
    session = _own(request)
    return _json(session_dict(_conversations(request).close(session.id)))


async def delete(request: web.Request) -> web.Response:
    """Forget a session and its history"""
    session = _own(request)
    conversations = _conversations(request)
    if session.open:
        conversations.close(session.id)  # releases a SESSION_AWARE pin first
    conversations.store.delete(session.id)
    return _json({"id": session.id, "object": "session.deleted", "deleted": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/sessions", create)
    app.router.add_get("/api/sessions", list_sessions)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_patch("/api/sessions/{session_id}", update)
    app.router.add_delete("/api/sessions/{session_id}", delete)
    app.router.add_get("/api/sessions/{session_id}/messages", history)
    app.router.add_post("/api/sessions/{session_id}/messages", say)
    app.router.add_post("/api/sessions/{session_id}/close", close)
