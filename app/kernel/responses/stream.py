"""A chat stream as the Responses API's typed server-sent events.

`ResponseStream` reads the raw SSE batches of a canonical chat stream (`Kernel.stream_raw`:
`data: {chunk}` events, then `data: [DONE]`) and writes what OpenAI's Responses stream holds,
each event with its `sequence_number`:

    response.created, response.in_progress
    response.output_item.added (a message) → response.content_part.added →
        response.output_text.delta… → response.output_text.done → response.content_part.done →
        response.output_item.done
    response.output_item.added (a function_call) → response.function_call_arguments.delta… →
        response.function_call_arguments.done → response.output_item.done
    response.completed (or response.incomplete at the token limit)

or, when the backend fails after the stream began, `error` and `response.failed`. Items open
as their first delta arrives and close when another item begins or the stream ends, so the
events nest the way OpenAI's SDKs accumulate them.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.kernel import sse
from app.kernel.errors import UpstreamUnavailableError
from app.kernel.responses import output as out
from app.kernel.responses.request import new_item_id


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ResponseStream:
    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response  # the shell: response.created's object, completed at the end
        self._seq = 0
        self._output: list[dict[str, Any]] = []  # items, in output order
        self._text: dict[str, Any] | None = None  # the open message item
        self._text_parts: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}  # tool call index → its item
        self._args: dict[int, list[str]] = {}
        self._open_call: int | None = None
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.done = False  # the chat stream's [DONE] was read

    def _event(self, kind: str, data: dict[str, Any]) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return event(kind, data)

    def start(self) -> bytes:
        return (self._event("response.created", {"response": self.response})
                + self._event("response.in_progress", {"response": self.response}))

    # -- chunks in ----------------------------------------------------------------------------
    def feed(self, batch: bytes) -> bytes:
        """The Responses events for one batch of chat-stream events."""
        parts: list[bytes] = []
        for raw in sse.events(batch):
            data = raw.partition(b"data:")[2].strip()
            if not data:
                continue
            if data == b"[DONE]":
                self.done = True
                continue
            chunk = orjson.loads(data)
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") is not None and "choices" not in chunk:
                # A pass-through stream relays the backend's error event as it came: here it ends the response.
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise UpstreamUnavailableError(f"the model failed mid-answer: {message}")
            if isinstance(chunk.get("usage"), dict):
                self.usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._choice(choice, parts)
        return b"".join(parts)

    def _choice(self, choice: dict[str, Any], parts: list[bytes]) -> None:
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._text is None:
                self._close_call(parts)
                self._open_text(parts)
            self._text_parts.append(text)
            parts.append(self._event("response.output_text.delta", {
                "item_id": self._text["id"], "output_index": self._text_index, "content_index": 0,  # type: ignore[index]
                "delta": text, "logprobs": []}))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call_delta(call, parts)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _open_text(self, parts: list[bytes]) -> None:
        self._text = out.message_item(new_item_id("msg"), "", status="in_progress")
        self._text_index = len(self._output)
        self._output.append(self._text)
        self._text_parts = []
        parts.append(self._event("response.output_item.added", {"output_index": self._text_index,
                                                                "item": self._text}))
        parts.append(self._event("response.content_part.added", {
            "item_id": self._text["id"], "output_index": self._text_index, "content_index": 0,
            "part": out.text_part("")}))

    def _close_text(self, parts: list[bytes]) -> None:
        item, self._text = self._text, None
        if item is None:
            return
        text = "".join(self._text_parts)
        index = self._output.index(item)
        common = {"item_id": item["id"], "output_index": index, "content_index": 0}
        parts.append(self._event("response.output_text.done", {**common, "text": text, "logprobs": []}))
        parts.append(self._event("response.content_part.done", {**common, "part": out.text_part(text)}))
        done = out.message_item(item["id"], text)
        self._output[index] = done
        parts.append(self._event("response.output_item.done", {"output_index": index, "item": done}))

    def _call_delta(self, call: dict[str, Any], parts: list[bytes]) -> None:
        n = call.get("index", 0)
        function = call.get("function") or {}
        if n not in self._calls:
            self._close_text(parts)
            self._close_call(parts)
            item = out.call_item(new_item_id("fc"), str(call.get("id") or new_item_id("call")),
                                 str(function.get("name") or ""), "", status="in_progress")
            self._calls[n], self._args[n], self._open_call = item, [], n
            self._output.append(item)
            parts.append(self._event("response.output_item.added", {"output_index": len(self._output) - 1,
                                                                    "item": dict(item)}))
        item = self._calls[n]
        if function.get("name") and not item["name"]:
            item["name"] = function["name"]
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            self._args[n].append(piece)
            parts.append(self._event("response.function_call_arguments.delta", {
                "item_id": item["id"], "output_index": self._output.index(item), "delta": piece}))

    def _close_call(self, parts: list[bytes]) -> None:
        n, self._open_call = self._open_call, None
        if n is None:
            return
        item = self._calls[n]
        item["arguments"] = "".join(self._args[n])
        item["status"] = "completed"
        index = self._output.index(item)
        parts.append(self._event("response.function_call_arguments.done", {
            "item_id": item["id"], "output_index": index, "name": item["name"], "arguments": item["arguments"]}))
        parts.append(self._event("response.output_item.done", {"output_index": index, "item": item}))

    # -- the end ------------------------------------------------------------------------------
    def finish(self) -> tuple[bytes, dict[str, Any]]:
        """Close the open items and complete the response: (the closing events but the last, the
        canonical assistant message). `completed()` is the last event, written once stored."""
        parts: list[bytes] = []
        self._close_text(parts)
        self._close_call(parts)
        if not self._output:  # an answer with nothing in it still has its (empty) message
            self._open_text(parts)
            self._close_text(parts)
        out.finish(self.response, self._output, self.finish_reason, self.usage)
        text = "".join(p["text"] for item in self._output if item["type"] == "message" for p in item["content"])
        calls = [item for item in self._output if item["type"] == "function_call"]
        return b"".join(parts), out.chain_message(text, calls)

    def completed(self) -> bytes:
        kind = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        return self._event(kind, {"response": self.response})

    def failed(self, code: str, message: str) -> bytes:
        self.response.update(status="failed", error={"code": code, "message": message}, output=self._output)
        return (self._event("error", {"code": code, "message": message, "param": None})
                + self._event("response.failed", {"response": self.response}))
