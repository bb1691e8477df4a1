"""A fake Anthropic Messages API: the real wire format over a real loopback socket.

Answers are deterministic: `reply_text` (one `text_delta` per word when streamed), or a
`tool_use` block when the request offers tools and `tool_use` is set. Requests are
validated the way the real API does it (headers, max_tokens, roles, tool results), and
errors come back as `{"type": "error", "error": {"type", "message"}}`. Built from plain
dicts (never from the code under test), so it is an independent witness of the format.

    fake.api_key = "sk-ant-test"      # then requests need `x-api-key: sk-ant-test`
    fake.tool_use = {"name": "get_weather", "input": {"city": "Oslo"}}
    fake.stream_error = ("overloaded_error", "Overloaded")   # `event: error` mid-stream
    fake.context_window = 50          # longer prompts get 400 "prompt is too long"
    fake.chunk_delay = 0.01           # simulated generation time between events
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.upstream import FakeUpstream

_WORD = re.compile(r"\S+\s*|\s+")
_ERROR_TYPE = {  # status → Anthropic's error type
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_BLOCK_TYPES = {"text", "image", "tool_use", "tool_result", "document", "thinking", "redacted_thinking"}


class FakeAnthropic(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[dict[str, Any]] = [
            {
                "id": "claude-fake-sonnet",
                "display_name": "Claude Fake Sonnet",
                "max_input_tokens": 200_000,
                "max_tokens": 64_000,
            },
            {"id": "claude-fake-haiku", "display_name": "Claude Fake Haiku"},
        ]
        self.api_key: str | None = None
        self.tool_use: dict[str, Any] | None = None
        self.stream_error: tuple[str, str] | None = None  # (error type, message) sent after the first delta
        self.context_window = 200_000
        self.chunk_delay = 0.0
        self.streams_finished = 0  # streams sent through to message_stop
        self._ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self._messages), web.get("/v1/models", self._list_models)]

    # -- errors ----------------------------------------------------------------------------
    def error_response(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        body = {"type": "error", "error": {"type": _ERROR_TYPE.get(status, "api_error"), "message": message}}
        return web.json_response(body, status=status, headers={"request-id": self._id("req"), **headers})

    def _auth_refusal(self, request: web.Request) -> web.Response | None:
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return self.error_response(401, "invalid x-api-key", {})
        if not request.headers.get("anthropic-version"):
            return self.error_response(400, "anthropic-version: header is required", {})
        return None

    def _invalid(self, body: Any) -> str | None:
        """Why the real API would refuse this body with a 400, or None."""
        if not isinstance(body, dict):
            return "Request body must be a JSON object"
        if not isinstance(body.get("model"), str):
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int):
            return "max_tokens: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                return f"messages.{i}.role: Input should be 'user' or 'assistant'" + (
                    "; use the top-level `system` parameter" if role == "system" else ""
                )
            content = message.get("content")
            if isinstance(content, list):
                for j, block in enumerate(content):
                    kind = block.get("type") if isinstance(block, dict) else None
                    if kind not in _BLOCK_TYPES:
                        return f"messages.{i}.content.{j}.type: unknown content block type {kind!r}"
                    if kind == "text" and not block.get("text"):
                        return f"messages.{i}.content.{j}: text content blocks must be non-empty"
                    if kind == "tool_result" and not block.get("tool_use_id"):
                        return f"messages.{i}.content.{j}.tool_use_id: Field required"
                    if kind == "tool_use" and not isinstance(block.get("input"), dict):
                        return f"messages.{i}.content.{j}.input: Input should be a valid dictionary"
            elif not isinstance(content, str):
                return f"messages.{i}.content: Input should be a valid string or list"
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            return "system: Input should be a valid string or list of text blocks"
        if body.get("tool_choice") is not None and not body.get("tools"):
            return "tool_choice may only be specified while providing tools."
        return None

    # -- messages --------------------------------------------------------------------------
    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = request["json"]
        refusal = self._auth_refusal(request)
        if refusal is not None:
            return refusal
        problem = self._invalid(body)
        if problem is not None:
            return self.error_response(400, problem, {})
        prompt_tokens = _prompt_tokens(body)
        if prompt_tokens > self.context_window:
            return self.error_response(
                400, f"prompt is too long: {prompt_tokens} tokens > {self.context_window} maximum", {}
            )
        cut_after = self.disconnect_after()
        if body.get("stream"):
            return await self._stream(request, body, prompt_tokens, cut_after)
        if cut_after is not None:
            return await self.cut(web.Response(), request)
        content, stop_reason, output_tokens = self._answer(body)
        return web.json_response(self._message(body, content, stop_reason, prompt_tokens, output_tokens))

    def _answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, int]:
        """The content blocks, stop reason and output token count for this request."""
        tool = self._tool_for(body)
        if tool is not None:
            return [{"type": "text", "text": "Let me check."}, tool], "tool_use", 12
        words = _WORD.findall(self.reply_text)
        if len(words) > body["max_tokens"]:
            return (
                [{"type": "text", "text": "".join(words[: body["max_tokens"]])}],
                "max_tokens",
                body["max_tokens"],
            )
        return [{"type": "text", "text": self.reply_text}], "end_turn", len(words)

    def _tool_for(self, body: dict[str, Any]) -> dict[str, Any] | None:
        choice = body.get("tool_choice") or {}
        if not (self.tool_use and body.get("tools")) or choice.get("type") == "none":
            return None
        name = choice.get("name") if choice.get("type") == "tool" else self.tool_use["name"]
        return {
            "type": "tool_use",
            "id": self._id("toolu"),
            "name": name,
            "input": self.tool_use.get("input", {}),
        }

    def _message(
        self,
        body: dict[str, Any],
        content: list[dict[str, Any]],
        stop_reason: str | None,
        prompt_tokens: int,
        output_tokens: int,
    ) -> dict[str, Any]:
        return {
            "id": self._id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], prompt_tokens: int, cut_after: int | None
    ) -> web.StreamResponse:
        content, stop_reason, output_tokens = self._answer(body)
        start = self._message(body, [], None, prompt_tokens, 1)
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, block in enumerate(content):
            events += _block_events(index, block)
            if index == 0:
                events.insert(2, ("ping", {"type": "ping"}))  # where the real API puts its first ping
        if self.stream_error is not None:
            kind, message = self.stream_error
            events.insert(4, ("error", {"type": "error", "error": {"type": kind, "message": message}}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": self._id("req"),
            }
        )
        await response.prepare(request)
        for sent, (name, data) in enumerate(events):
            if cut_after is not None and sent >= cut_after:
                return await self.cut(response, request)
            if self.chunk_delay and sent:
                await asyncio.sleep(self.chunk_delay)  # simulated token generation time
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            if name == "error":
                break  # the real API ends the stream after an error event
        else:
            self.streams_finished += 1
        await response.write_eof()
        return response

    # -- models ----------------------------------------------------------------------------
    async def _list_models(self, request: web.Request) -> web.Response:
        refusal = self._auth_refusal(request)
        if refusal is not None:
            return refusal
        limit = int(request.query.get("limit", "20"))
        after = request.query.get("after_id")
        data = [{"type": "model", "created_at": "2025-01-01T00:00:00Z", **m} for m in self.models]
        if after is not None:
            ids = [m["id"] for m in data]
            data = data[ids.index(after) + 1 :] if after in ids else []
        page = data[:limit]
        return web.json_response(
            {
                "data": page,
                "has_more": len(data) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            }
        )

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):04d}"


def _block_events(index: int, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """content_block_start, its deltas and content_block_stop, as the real API streams a block."""
    if block["type"] == "tool_use":
        start = {**block, "input": {}}
        args = json.dumps(block["input"])
        deltas = [
            {"type": "input_json_delta", "partial_json": args[i : i + 7]} for i in range(0, len(args), 7)
        ]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": w} for w in _WORD.findall(block["text"])]
    events = [
        ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
    ]
    events += [
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
    ]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A deterministic stand-in for tokenising: words in the system prompt and messages."""

    def words(content: Any) -> int:
        if isinstance(content, str):
            return len(content.split())
        if isinstance(content, list):
            return sum(words(b.get("text") or b.get("content") or "") for b in content if isinstance(b, dict))
        return 0

    return words(body.get("system")) + sum(words(m.get("content")) for m in body["messages"])


@pytest_asyncio.fixture
async def anthropic_upstream():
    """A running FakeAnthropic on 127.0.0.1; `url` is what a client uses as base_url."""
    fake = await FakeAnthropic().start()
    try:
        yield fake
    finally:
        await fake.stop()
