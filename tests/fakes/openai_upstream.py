"""A fake OpenAI API server: the real wire format over a real loopback socket.

Answers are deterministic: the reply is `reply_text` (split into word chunks when
streamed), a tool call when the request offers tools and `tool_call` is set, JSON text
for `response_format` JSON mode. Built from plain dicts, no pydantic, so gateway tests and
benchmarks can push many requests through it.

    fake.models = ["m1", {"id": "m2", "context_length": 32768}]
    fake.api_key = "sk-test"          # then requests need `Authorization: Bearer sk-test`
    fake.tool_call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    fake.stream_error = {"message": "boom", "type": "server_error"}   # sent mid-stream
    fake.chunk_delay = 0.01           # simulated generation time between chunks
    fake.json_for_stream = True       # streams answered with a plain JSON completion (some servers)
    fake.empty_streams = True         # streams answered with an event stream holding no event
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import struct
import time
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.upstream import FakeUpstream

_WORD = re.compile(r"\S+\s*|\s+")
_ERROR_KIND = {  # status → (type, code) as OpenAI sends them
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class FakeOpenAI(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[str | dict[str, Any]] = ["gpt-fake-mini", "gpt-fake-large"]
        self.tool_call: dict[str, Any] | None = None
        self.strict_models = False  # most local servers answer for any model name
        self.api_key: str | None = None
        self.stream_error: dict[str, Any] | None = None  # an error object sent after the first chunk
        self.chunk_delay = 0.0
        self.send_done = True  # False: end streams without `data: [DONE]`, as some older servers do
        # True: a streaming request gets the plain JSON answer, as servers that ignore `stream` send it
        self.json_for_stream = False
        self.empty_streams = False  # True: a streaming request gets text/event-stream with no event at all
        self.embedding_dim = 8
        self.streams_finished = 0  # streams sent through to [DONE]
        # Set to an unset asyncio.Event to hold a stream's end of body (its terminating chunk)
        # after `data: [DONE]` until the event is set.
        self.hold_tail: asyncio.Event | None = None
        self._ids = itertools.count(1)

    @property
    def api_base(self) -> str:
        """The API root a client is configured with (`/v1` included)."""
        return f"{self.url}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self._chat),
            web.post("/v1/completions", self._completions),
            web.post("/v1/embeddings", self._embeddings),
            web.get("/v1/models", self._models),
        ]

    # -- errors ----------------------------------------------------------------------------
    def error_response(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        kind, code = _ERROR_KIND.get(status, ("server_error", None))
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _refusal(self, request: web.Request, body: Any, *, need: str) -> web.Response | None:
        """What OpenAI answers to a request it will not serve (auth, shape, model), or None."""
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error_response(401, "Incorrect API key provided.", {})
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self.error_response(400, "you must provide a model parameter", {})
        if need not in body:
            return self.error_response(400, f"Missing required parameter: '{need}'.", {})
        if body.get("stream_options") is not None and not body.get("stream"):
            return self.error_response(
                400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", {}
            )
        if self.strict_models and body["model"] not in self._model_names():
            return self.error_response(
                404, f"The model `{body['model']}` does not exist or you do not have access to it.", {}
            )
        return None

    # -- chat ------------------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request["json"]
        refusal = self._refusal(request, body, need="messages")
        if refusal is not None:
            return refusal
        cut_after = self.disconnect_after()
        if body.get("stream") and self.empty_streams:
            return web.Response(body=b"", headers={"Content-Type": "text/event-stream; charset=utf-8"})
        if body.get("stream") and not self.json_for_stream:
            return await self._chat_stream(request, body, cut_after)
        if cut_after is not None:
            return await self.cut(web.Response(), request)
        call = self._tool_call_for(body)
        text = None if call else self._reply_for(body)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if call:
            message["tool_calls"] = [call]
        completion = len(_WORD.findall(text)) if text else 1
        return web.json_response(
            {
                "id": self._id("chatcmpl"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": "tool_calls" if call else "stop",
                    }
                ],
                "usage": _usage(_prompt_tokens(body), completion),
            }
        )

    async def _chat_stream(
        self, request: web.Request, body: dict[str, Any], cut_after: int | None
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {
            "id": self._id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake",
        }
        if include_usage:
            head["usage"] = None  # OpenAI sends a null usage on every chunk but the last

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                **head,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        call = self._tool_call_for(body)
        if call:
            args = call["function"]["arguments"]
            pieces = [args[i : i + 8] for i in range(0, len(args), 8)] or [""]
            first = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
            events = [chunk({"role": "assistant", "content": None, "tool_calls": [first], "refusal": None})]
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
            events.append(chunk({}, "tool_calls"))
            completion = len(pieces)
        else:
            words = _WORD.findall(self._reply_for(body))
            events = [chunk({"role": "assistant", "content": "", "refusal": None})]
            events += [chunk({"content": w}) for w in words]
            events.append(chunk({}, "stop"))
            completion = len(words)
        if include_usage:
            events.append({**head, "choices": [], "usage": _usage(_prompt_tokens(body), completion)})
        if self.stream_error is not None:
            events.insert(2, {"error": self.stream_error})

        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for sent, event in enumerate(events):
            if cut_after is not None and sent >= cut_after:
                return await self.cut(response, request)
            if self.chunk_delay and sent:
                await asyncio.sleep(self.chunk_delay)  # simulated token generation time
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            if "error" in event:
                break  # OpenAI ends the stream after an error event
        else:
            if self.send_done:
                await response.write(b"data: [DONE]\n\n")
            self.streams_finished += 1
            if self.hold_tail is not None:
                await self.hold_tail.wait()
        await response.write_eof()
        return response

    def _tool_call_for(self, body: dict[str, Any]) -> dict[str, Any] | None:
        if not (self.tool_call and body.get("tools")) or body.get("tool_choice") == "none":
            return None
        args = self.tool_call.get("arguments", {})
        return {
            "id": self._id("call"),
            "type": "function",
            "function": {
                "name": self.tool_call["name"],
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }

    def _reply_for(self, body: dict[str, Any]) -> str:
        fmt = body.get("response_format") or {}
        if fmt.get("type") in ("json_object", "json_schema"):
            return json.dumps({"reply": self.reply_text})
        return self.reply_text

    # -- legacy completions ----------------------------------------------------------------
    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = request["json"]
        refusal = self._refusal(request, body, need="prompt")
        if refusal is not None:
            return refusal
        head = {
            "id": self._id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }
        words = _WORD.findall(self.reply_text)
        prompt = body["prompt"] if isinstance(body["prompt"], str) else " ".join(map(str, body["prompt"]))
        usage = _usage(len(prompt.split()), len(words))
        if not body.get("stream") or self.json_for_stream:
            choice = {"text": self.reply_text, "index": 0, "logprobs": None, "finish_reason": "stop"}
            return web.json_response({**head, "choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for i, word in enumerate(words):
            finish = "stop" if i == len(words) - 1 else None
            choice = {"text": word, "index": 0, "logprobs": None, "finish_reason": finish}
            await response.write(b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    # -- embeddings and models -------------------------------------------------------------
    async def _embeddings(self, request: web.Request) -> web.Response:
        body = request["json"]
        refusal = self._refusal(request, body, need="input")
        if refusal is not None:
            return refusal
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        as_base64 = body.get("encoding_format") == "base64"  # the openai SDK's default
        data = []
        for i, text in enumerate(texts):
            vector = self.vector(str(text))
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def vector(self, text: str) -> list[float]:
        """The deterministic unit vector the fake returns for `text`."""
        digest = hashlib.sha256(text.encode()).digest()
        raw = [(b - 127.5) / 127.5 for b in digest[: self.embedding_dim]]
        norm = sum(x * x for x in raw) ** 0.5 or 1.0
        return [x / norm for x in raw]

    async def _models(self, request: web.Request) -> web.Response:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error_response(401, "Incorrect API key provided.", {})
        data = []
        for entry in self.models:
            item = {"id": entry} if isinstance(entry, str) else dict(entry)
            data.append({"object": "model", "created": 1700000000, "owned_by": "fake", **item})
        return web.json_response({"object": "list", "data": data})

    def _model_names(self) -> set[str]:
        return {m if isinstance(m, str) else m["id"] for m in self.models}

    def _id(self, prefix: str) -> str:
        return f"{prefix}-fake{next(self._ids)}"


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A deterministic stand-in for tokenising: words in the messages' text."""
    count = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(content.split())
        elif isinstance(content, list):
            count += sum(len(str(p.get("text", "")).split()) for p in content if isinstance(p, dict))
    return count


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@pytest_asyncio.fixture
async def openai_upstream():
    """A running FakeOpenAI on 127.0.0.1; `api_base` is its API root."""
    fake = await FakeOpenAI().start()
    try:
        yield fake
    finally:
        await fake.stop()
