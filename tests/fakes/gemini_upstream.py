"""A fake Google Gemini API (AI Studio, `generativelanguage.googleapis.com`) on a loopback socket.

It speaks Gemini's own wire format, not OpenAI's: `POST /v1beta/models/{model}:generateContent`,
`:streamGenerateContent?alt=sse` (server-sent events of GenerateContentResponse objects),
`:batchEmbedContents`, `GET /v1beta/models`, the key in `x-goog-api-key`, and errors as
`{"error": {"code", "message", "status"}}` — so a client that translates for Gemini (litellm's
`gemini/` route) is tested for real.

    fake.api_key = "AIza-test"      # requests with another key get Google's 400 API_KEY_INVALID
    fake.tool_call = {"name": "get_weather", "args": {"city": "Oslo"}}
    fake.finish_reason = "MAX_TOKENS"
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.upstream import FakeUpstream

_WORD = re.compile(r"\S+\s*|\s+")
_STATUS = {  # HTTP status → google.rpc.Code name, as Google sends them
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class FakeGemini(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.api_key: str | None = "fake-gemini-key"
        self.models = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-embedding-001"]
        self.tool_call: dict[str, Any] | None = None
        self.finish_reason = "STOP"
        self.embedding_dim = 8
        self.chunk_delay = 0.0
        self.streams_finished = 0

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1beta"

    def routes(self) -> list[web.RouteDef]:
        # aiohttp cannot route on the ":method" suffix of a path segment, so one handler splits it
        return [
            web.post("/v1beta/models/{target}", self._model_method),
            web.get("/v1beta/models", self._list_models),
        ]

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        body = {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}
        return web.json_response(body, status=status, headers=headers)

    def _key_refusal(self, request: web.Request) -> web.Response | None:
        if self.api_key is not None and request.headers.get("x-goog-api-key") != self.api_key:
            # Google answers a wrong key with 400, not 401
            return self.error_response(400, "API key not valid. Please pass a valid API key.", {})
        return None

    async def _list_models(self, request: web.Request) -> web.Response:
        if (refusal := self._key_refusal(request)) is not None:
            return refusal
        return web.json_response(
            {
                "models": [
                    {
                        "name": f"models/{m}",
                        "displayName": m,
                        "inputTokenLimit": 1048576,
                        "outputTokenLimit": 65536,
                        "supportedGenerationMethods": ["embedContent"]
                        if "embedding" in m
                        else ["generateContent"],
                    }
                    for m in self.models
                ]
            }
        )

    async def _model_method(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if (refusal := self._key_refusal(request)) is not None:
            return refusal
        if model not in self.models:
            return self.error_response(404, f"models/{model} is not found for API version v1beta", {})
        body = request["json"]
        if method == "batchEmbedContents":
            return self._embed(model, body)
        if method not in ("generateContent", "streamGenerateContent"):
            return self.error_response(400, f"Unknown method {method!r}", {})
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
            return self.error_response(
                400, "* GenerateContentRequest.contents: contents is not specified", {}
            )
        if method == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                return self.error_response(400, "this fake streams server-sent events only (alt=sse)", {})
            return await self._stream(request, model, body)
        if self.disconnect_after() is not None:
            return await self.cut(web.Response(), request)
        return web.json_response(self._answer(model, body, self._reply_parts(body), final=True))

    # -- generation ------------------------------------------------------------------------
    def _reply_parts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if self.tool_call is not None and body.get("tools"):
            return [
                {"functionCall": {"name": self.tool_call["name"], "args": self.tool_call.get("args", {})}}
            ]
        return [{"text": self.reply_text}]

    def _answer(
        self,
        model: str,
        body: dict[str, Any],
        parts: list[dict[str, Any]],
        *,
        final: bool,
        sent_words: int = 0,
    ) -> dict[str, Any]:
        prompt = prompt_tokens(body)
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if final:
            candidate["finishReason"] = self.finish_reason
        answer: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": model,
            "responseId": "fake-response",
        }
        words = sent_words or sum(len(_WORD.findall(p.get("text", ""))) or 1 for p in parts)
        if final:  # Gemini reports usage on the last chunk of a stream (and on every whole answer)
            answer["usageMetadata"] = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": words,
                "totalTokenCount": prompt + words,
            }
        return answer

    async def _stream(self, request: web.Request, model: str, body: dict[str, Any]) -> web.StreamResponse:
        cut_after = self.disconnect_after()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        parts = self._reply_parts(body)
        pieces: list[list[dict[str, Any]]] = (
            [[{"text": w}] for w in _WORD.findall(parts[0]["text"])] if "text" in parts[0] else [parts]
        )
        for i, piece in enumerate(pieces):
            if cut_after is not None and i >= cut_after:
                return await self.cut(response, request)
            last = i == len(pieces) - 1
            event = self._answer(model, body, piece, final=last, sent_words=len(pieces) if last else 0)
            await response.write(f"data: {json.dumps(event)}\r\n\r\n".encode())
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)  # simulated generation time
        self.streams_finished += 1
        await response.write_eof()
        return response

    def _embed(self, model: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            return self.error_response(400, "* BatchEmbedContentsRequest.requests: requests is required", {})
        vectors = []
        for item in body["requests"]:
            text = "".join(p.get("text", "") for p in item.get("content", {}).get("parts", []))
            # deterministic: the same text always gets the same vector
            vectors.append({"values": [float((len(text) + i) % 7) for i in range(self.embedding_dim)]})
        return web.json_response({"embeddings": vectors})


def prompt_tokens(body: dict[str, Any]) -> int:
    """A word count of every text part sent, standing in for Gemini's tokenizer."""
    texts = [p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", [])]
    # Google's JSON parser takes both spellings of proto fields; clients use either
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    texts += [p.get("text", "") for p in system.get("parts", [])]
    return sum(len(_WORD.findall(t)) for t in texts)


@pytest_asyncio.fixture
async def fake_gemini():
    server = await FakeGemini().start()
    try:
        yield server
    finally:
        await server.stop()
