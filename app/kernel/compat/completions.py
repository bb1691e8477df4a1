"""OpenAI's legacy completions (`/v1/completions`) served by a chat model.

Backends that speak OpenAI take `/completions` as is; for the others (Anthropic, Ollama,
in-process GGUF) the request becomes a one-message chat and the answer, or each streamed
event, is rewritten in the completions shape.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from app.kernel import sse
from app.kernel.errors import BadRequestError

# Fields that mean the same in both APIs; the rest (echo, best_of, suffix, logprobs) have no
# chat equivalent and are dropped.
_SHARED = ("model", "max_tokens", "temperature", "top_p", "stop", "seed", "user", "stream",
           "presence_penalty", "frequency_penalty")


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise BadRequestError("prompt: this backend takes one text prompt per request")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequestError("prompt: expected a string")
    chat = {k: v for k, v in body.items() if k in _SHARED}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat


def from_chat(answer: dict[str, Any], created: int | None = None) -> dict[str, Any]:
    choice = (answer.get("choices") or [{}])[0]
    return {
        "id": answer.get("id", ""),
        "object": "text_completion",
        "created": created or int(time.time()),
        "model": answer.get("model", ""),
        "usage": answer.get("usage"),
        "choices": [
            {
                "index": 0,
                "text": (choice.get("message") or {}).get("content") or "",
                "logprobs": None,
                "finish_reason": choice.get("finish_reason"),
            }
        ],
    }


async def events_from_chat(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A chat SSE stream (batches of events) as a completions stream, batch for batch."""
    created = int(time.time())
    try:
        async for batch in events:
            yield b"".join(_event(event, created) for event in sse.events(batch))
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def _event(event: bytes, created: int) -> bytes:
    payload = event.partition(b"data:")[2].strip()
    if payload == b"[DONE]" or not payload.startswith(b"{"):
        return event
    chunk = orjson.loads(payload)
    out: dict[str, Any] = {
        "id": chunk.get("id", ""),
        "object": "text_completion",
        "created": created,
        "model": chunk.get("model", ""),
        "choices": [
            {
                "index": c.get("index", 0),
                "text": (c.get("delta") or {}).get("content") or "",
                "logprobs": None,
                "finish_reason": c.get("finish_reason"),
            }
            for c in chunk.get("choices") or []
        ],
    }
    if chunk.get("usage"):
        out["usage"] = chunk["usage"]
    return b"data: " + orjson.dumps(out) + b"\n\n"
