"""A canonical chat answer as a Responses API response object.

`from_chat(answer, ...)` turns a whole Chat Completions answer (OpenAI JSON, as `Kernel.chat_raw`
returns it) into the response: its output items (an assistant `message` with `output_text`,
then one `function_call` per tool call), its status (`incomplete` when the answer stopped at
the token limit), its usage in the Responses shape, and the canonical assistant message the
chain stores. The stream encoder (`stream.py`) builds the same object from chunks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.kernel.responses.request import new_item_id

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(slots=True)
class Answer:
    response: dict[str, Any]  # the response object
    message: dict[str, Any]  # the canonical assistant message the chain stores


def new_response_id() -> str:
    return new_item_id("resp")


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def message_item(item_id: str, text: str, *, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [text_part(text)] if status == "completed" else []}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call_id: str, name: str, arguments: str, *, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def usage(raw: Any) -> dict[str, Any] | None:
    """Chat usage (prompt/completion tokens) in the Responses shape (input/output tokens)."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (raw.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(raw.get("total_tokens") or prompt + completion)}


def shell(response_id: str, model: str, echo: dict[str, Any], *, previous: str | None, store: bool,
          created_at: float | None = None) -> dict[str, Any]:
    """The response object before it has output: what `response.created` carries."""
    return {
        "id": response_id, "object": "response", "created_at": int(created_at or time.time()),
        "status": "in_progress", "background": False, "error": None, "incomplete_details": None,
        "model": model, "output": [], "usage": None, "previous_response_id": previous, "store": store,
        "reasoning": {"effort": None, "summary": None}, "service_tier": "default", **echo,
    }


def finish(response: dict[str, Any], output: list[dict[str, Any]], finish_reason: str | None,
           raw_usage: Any) -> dict[str, Any]:
    """`response` (a shell) completed with its output, status and usage; returns it."""
    reason = _INCOMPLETE.get(finish_reason or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["output"] = output
    response["usage"] = usage(raw_usage)
    response["completed_at"] = int(time.time())
    return response


def chain_message(text: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The canonical assistant message a response adds to its chain."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [{"id": c["call_id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
    elif message["content"] is None:
        message["content"] = ""
    return message


def from_chat(answer: dict[str, Any], response: dict[str, Any]) -> Answer:
    """The whole chat `answer` as the completed `response` (a shell from `shell`)."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    text = text_of(message.get("content"))
    refusal = message.get("refusal")
    output: list[dict[str, Any]] = []
    calls = [call_item(new_item_id("fc"), str(c.get("id") or new_item_id("call")),
                       str((c.get("function") or {}).get("name") or ""), (c.get("function") or {}).get("arguments") or "")
             for c in message.get("tool_calls") or () if isinstance(c, dict)]
    if text or refusal or not calls:
        item = message_item(new_item_id("msg"), text)
        if refusal:
            item["content"] = [{"type": "refusal", "refusal": refusal}]
        output.append(item)
    output += calls
    finish(response, output, choice.get("finish_reason"), answer.get("usage"))
    return Answer(response=response, message=chain_message(text, calls))
