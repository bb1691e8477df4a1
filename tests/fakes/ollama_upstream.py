"""A fake Ollama server: Ollama's native /api/* wire format (NDJSON streams) on loopback.

What it serves, as real Ollama does:
  POST /api/chat      chat, streamed as NDJSON unless `"stream": false`; tool calls when tools
                      are sent and `fake.tool_call` is set; `format` "json" or a schema
  POST /api/generate  an empty prompt loads the model (keep_alive 0 unloads it)
  POST /api/embed     deterministic embeddings
  POST /api/show      details and model_info with "<arch>.context_length"
  GET  /api/tags      the installed models (`fake.models`)
  GET  /api/ps        the loaded models, with expires_at from keep_alive
  GET  /api/version   the server version
  GET  /v1/models     the OpenAI-compatible model list Ollama also serves

Errors are Ollama's `{"error": "..."}`; an unknown model is 404 `model "x" not found, try
pulling it first`. Beyond the base faults: `stream_error` puts an `{"error"}` line into the
stream after the first chunk, `broken_show` makes /api/show fail for those names, and
`stream_pace` spaces stream lines out (simulated token rate, so early-close tests have a
stream that is still running when the client leaves).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from tests.fakes.upstream import FakeUpstream

VERSION = "0.6.8"
_TOOLS_TEMPLATE = "{{- if .Tools }}tools: {{ .Tools }}{{ end }}{{ .Prompt }}"
_PLAIN_TEMPLATE = "{{ .System }} USER: {{ .Prompt }} ASSISTANT:"


def default_models() -> dict[str, dict[str, Any]]:
    """name → what Ollama knows about it (the fields /api/tags, /api/show and /api/ps report)."""
    return {
        "llama3.2:latest": {
            "size": 2_019_393_189,
            "family": "llama",
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
            "context_length": 131_072,
            "capabilities": ["completion", "tools"],
        },
        "qwen2.5:0.5b": {
            "size": 397_821_319,
            "family": "qwen2",
            "parameter_size": "494.03M",
            "quantization_level": "Q4_K_M",
            "context_length": 32_768,
            "capabilities": ["completion", "tools"],
        },
        "nomic-embed-text:latest": {
            "size": 274_302_450,
            "family": "nomic-bert",
            "parameter_size": "137M",
            "quantization_level": "F16",
            "context_length": 2_048,
            "capabilities": ["embedding"],
        },
    }


def parse_keep_alive(value: Any) -> timedelta | None:
    """Ollama's keep_alive: a duration string ("5m", "1h30m", "10s"), seconds, 0 = unload,
    negative = forever (None here)."""
    if value is None:
        return timedelta(minutes=5)
    if isinstance(value, int | float):
        return None if value < 0 else timedelta(seconds=value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return parse_keep_alive(float(text))
    if text.startswith("-"):
        return None
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"time: invalid duration {text!r}")
    return timedelta(seconds=sum(float(n) * units[u] for n, u in parts))


def _example_for(schema: dict[str, Any], text: str) -> Any:
    """A value that satisfies a (simple) JSON schema: what a model under `format` would emit."""
    kind = schema.get("type")
    if kind == "object":
        return {name: _example_for(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind == "integer":
        return 42
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


class FakeOllama(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, dict[str, Any]] = default_models()
        self.loaded: dict[str, datetime | None] = {}  # name → expires_at (None: never)
        self.tool_call: dict[str, Any] | None = None  # {"name": ..., "arguments": {...}}
        self.stream_error: str | None = None
        self.broken_show: set[str] = set()
        self.stream_pace: float = 0.0
        self.embedding_dim = 8
        # While `hold_show` is set to an unset Event, /api/show requests wait on it; tests
        # release it once `wait_for_shows(n)` saw n of them in flight at the same time.
        self.hold_show: asyncio.Event | None = None
        self.shows_in_flight = 0
        self._show_arrivals = asyncio.Condition()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/chat", self.chat),
            web.post("/api/generate", self.generate),
            web.post("/api/embed", self.embed),
            web.post("/api/show", self.show),
            web.get("/api/tags", self.tags),
            web.get("/api/ps", self.ps),
            web.get("/api/version", self.version),
            web.get("/v1/models", self.openai_models),
        ]

    # -- Ollama's error format -------------------------------------------------------------
    def error_response(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        return web.json_response({"error": message}, status=status, headers=headers)

    def _fail(self, status: int, message: str) -> web.Response:
        return self.error_response(status, message, {})

    def _unknown(self, name: Any) -> web.Response | None:
        if not isinstance(name, str) or not name:
            return self._fail(400, "model is required")
        if name not in self.models:
            return self._fail(404, f'model "{name}" not found, try pulling it first')
        return None

    # -- state --------------------------------------------------------------------------------
    def _touch(self, name: str, keep_alive: Any) -> bool:
        """Load (or unload, keep_alive 0) a model as a request naming it would; False if unloaded."""
        duration = parse_keep_alive(keep_alive)
        if duration is not None and duration.total_seconds() <= 0:
            self.loaded.pop(name, None)
            return False
        self.loaded[name] = None if duration is None else datetime.now(UTC) + duration
        return True

    def _details(self, name: str) -> dict[str, Any]:
        info = self.models[name]
        return {
            "parent_model": "",
            "format": "gguf",
            "family": info["family"],
            "families": [info["family"]],
            "parameter_size": info["parameter_size"],
            "quantization_level": info["quantization_level"],
        }

    @staticmethod
    def _digest(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")

    # -- listing ------------------------------------------------------------------------------
    async def tags(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": "2025-01-05T10:00:00.000000Z",
                "size": info["size"],
                "digest": self._digest(name),
                "details": self._details(name),
            }
            for name, info in self.models.items()
        ]
        return web.json_response({"models": models})

    async def show(self, request: web.Request) -> web.Response:
        body = request["json"] or {}
        name = body.get("model") or body.get("name")
        if (missing := self._unknown(name)) is not None:
            return missing
        if name in self.broken_show:
            return self._fail(500, f"failed to read manifest of {name}")
        if self.hold_show is not None:
            async with self._show_arrivals:
                self.shows_in_flight += 1
                self._show_arrivals.notify_all()
            try:
                await self.hold_show.wait()
            finally:
                self.shows_in_flight -= 1
        info = self.models[name]
        arch = info["family"]
        return web.json_response(
            {
                "license": "",
                "modelfile": f"FROM {name}\n",
                "parameters": 'stop "<|eot_id|>"',
                "template": _TOOLS_TEMPLATE if "tools" in info["capabilities"] else _PLAIN_TEMPLATE,
                "details": self._details(name),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": 1_000_000,
                    f"{arch}.context_length": info["context_length"],
                    f"{arch}.embedding_length": 2048,
                },
                "capabilities": info["capabilities"],
                "modified_at": "2025-01-05T10:00:00.000000Z",
            }
        )

    async def wait_for_shows(self, count: int) -> None:
        """Return once `count` /api/show requests are held at the same time."""
        async with self._show_arrivals:
            await self._show_arrivals.wait_for(lambda: self.shows_in_flight >= count)

    async def ps(self, request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        for name, expires in list(self.loaded.items()):
            if expires is not None and expires <= now:
                del self.loaded[name]
        models = [
            {
                "name": name,
                "model": name,
                "size": self.models[name]["size"],
                "digest": self._digest(name),
                "details": self._details(name),
                "expires_at": (expires or datetime(2318, 1, 1, tzinfo=UTC)).isoformat(),
                "size_vram": self.models[name]["size"],
            }
            for name, expires in self.loaded.items()
        ]
        return web.json_response({"models": models})

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": VERSION})

    async def openai_models(self, request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 1736071200, "owned_by": "library"}
            for name in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    # -- generation ---------------------------------------------------------------------------
    def _answer(self, body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], str]:
        """(content pieces, tool calls, done_reason) for a chat request."""
        if body.get("tools") and self.tool_call is not None:
            call = {
                "function": {"name": self.tool_call["name"], "arguments": self.tool_call.get("arguments", {})}
            }
            return [], [call], "stop"
        fmt = body.get("format")
        if fmt == "json":
            return [json.dumps({"reply": self.reply_text})], [], "stop"
        if isinstance(fmt, dict):
            return [json.dumps(_example_for(fmt, self.reply_text))], [], "stop"
        pieces = re.findall(r"\S+\s*", self.reply_text) or [""]
        limit = (body.get("options") or {}).get("num_predict")
        if isinstance(limit, int) and 0 <= limit < len(pieces):
            return pieces[:limit], [], "length"
        return pieces, [], "stop"

    def _final(self, name: str, body: dict[str, Any], done_reason: str, eval_count: int) -> dict[str, Any]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        return {
            "model": name,
            "created_at": self._now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": done_reason,
            "done": True,
            "total_duration": 123_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": 20_000_000,
            "eval_count": eval_count,
            "eval_duration": 100_000_000,
        }

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = request["json"]
        if not isinstance(body, dict):
            return self._fail(400, "invalid request body")
        name = body.get("model")
        if (missing := self._unknown(name)) is not None:
            return missing
        messages = body.get("messages")
        if messages is None or messages == []:  # Ollama: no messages loads or unloads
            loaded = self._touch(name, body.get("keep_alive"))
            return web.json_response(
                {
                    "model": name,
                    "created_at": self._now(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load" if loaded else "unload",
                    "done": True,
                }
            )
        if not isinstance(messages, list) or any(
            not isinstance(m, dict) or "role" not in m for m in messages
        ):
            return self._fail(400, "invalid message format")
        try:
            self._touch(name, body.get("keep_alive"))
        except ValueError as e:
            return self._fail(400, str(e))
        pieces, calls, done_reason = self._answer(body)
        if body.get("stream", True) is False:
            answer = self._final(name, body, done_reason, len(pieces))
            answer["message"] = {"role": "assistant", "content": "".join(pieces)}
            if calls:
                answer["message"]["tool_calls"] = calls
            return web.json_response(answer)
        return await self._stream(request, name, body, pieces, calls, done_reason)

    async def _stream(
        self,
        request: web.Request,
        name: str,
        body: dict[str, Any],
        pieces: list[str],
        calls: list[dict[str, Any]],
        done_reason: str,
    ) -> web.StreamResponse:
        lines: list[dict[str, Any]] = [
            {
                "model": name,
                "created_at": self._now(),
                "message": {"role": "assistant", "content": p},
                "done": False,
            }
            for p in pieces
        ]
        if calls:
            message = {"role": "assistant", "content": "", "tool_calls": calls}
            lines.append({"model": name, "created_at": self._now(), "message": message, "done": False})
        if self.stream_error is not None:
            lines.insert(1, {"error": self.stream_error})
            del lines[2:]  # Ollama stops the stream after reporting the error
        else:
            lines.append(self._final(name, body, done_reason, len(pieces)))
        cut_after = self.disconnect_after()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for sent, line in enumerate(lines):
            if cut_after is not None and sent >= cut_after:
                return await self.cut(response, request)
            if sent and self.stream_pace:
                await asyncio.sleep(self.stream_pace)  # simulated token rate, not a test wait
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response

    async def generate(self, request: web.Request) -> web.Response:
        body = request["json"]
        if not isinstance(body, dict):
            return self._fail(400, "invalid request body")
        name = body.get("model")
        if (missing := self._unknown(name)) is not None:
            return missing
        try:
            loaded = self._touch(name, body.get("keep_alive"))
        except ValueError as e:
            return self._fail(400, str(e))
        answer: dict[str, Any] = {"model": name, "created_at": self._now(), "response": "", "done": True}
        if body.get("prompt"):
            answer.update(response=self.reply_text, done_reason="stop", prompt_eval_count=1, eval_count=1)
        else:
            answer["done_reason"] = "load" if loaded else "unload"
        if body.get("stream", True) is False:
            return web.json_response(answer)
        return web.Response(body=json.dumps(answer) + "\n", content_type="application/x-ndjson")

    def vector(self, text: str) -> list[float]:
        """A unit vector derived from the text: equal texts embed equally, others differ."""
        raw = [b - 128 for b in hashlib.sha256(text.encode()).digest()[: self.embedding_dim]]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        return [x / norm for x in raw]

    async def embed(self, request: web.Request) -> web.Response:
        body = request["json"]
        if not isinstance(body, dict):
            return self._fail(400, "invalid request body")
        name = body.get("model")
        if (missing := self._unknown(name)) is not None:
            return missing
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._fail(400, "invalid input type")
        self._touch(name, body.get("keep_alive"))
        return web.json_response(
            {
                "model": name,
                "embeddings": [self.vector(t) for t in texts],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(t.split()) for t in texts),
            }
        )


@pytest.fixture
async def ollama_upstream():
    """A running FakeOllama on 127.0.0.1 with a random port, stopped after the test."""
    fake = await FakeOllama().start()
    try:
        yield fake
    finally:
        await fake.stop()
