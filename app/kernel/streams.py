"""Routed streams and the usage they carry: the kernel's and the gateway's lane's shared helpers.

`ObservedStream` wraps a routed stream so that how it ended (usage, outcome) is reported once;
the functions read usage out of OpenAI JSON and server-sent-event batches without parsing
more than the event that carries it, tell whether an answer holds any output at all (an
answer with none is recorded `empty_answer`, never `ok`), and turn a whole JSON answer that a
server sent to a streaming request into the stream the client asked for (`answer_events`).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from app.kernel.canonical import ChatChunk, ModelSpec, Usage
from app.kernel.errors import ByenatosError, EmptyAnswerError

T = TypeVar("T")

EMPTY_ANSWER = EmptyAnswerError.code  # the outcome of a request whose answer held nothing

# Something a user sees in an OpenAI chunk or answer: a non-empty string, list or object as the
# value of one of these keys ("content":"" and "content":null, the role chunk's, are not).
_OUTPUT = re.compile(
    rb'"(?:content|text|refusal|reasoning_content|tool_calls|function_call)"\s*:\s*(?!""|\[\])["\[{]')
_OUTPUT_KEYS = ("content", "tool_calls", "refusal", "reasoning_content", "function_call")


def stream_wire(name: str, driver: Any, body: dict[str, Any], *, meter: bool) -> dict[str, Any]:
    """The body of a pass-through stream as `driver` gets it for its model `name`: the name,
    `stream`, and with `meter` the usage chunk asked for where the backend accepts `stream_options`."""
    wire = {**body, "model": name, "stream": True}
    config = getattr(driver, "config", None)
    if meter and getattr(config, "options", {}).get("stream_usage") is not False:
        wire["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return wire


def usage_of(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    try:
        return Usage.model_validate(raw)
    except ValueError:
        return None


def chunk_usage(chunk: ChatChunk) -> Usage | None:
    return chunk.usage


def sse_usage(batch: bytes) -> Usage | None:
    """Usage from a raw SSE batch, parsed only when an event carries it (the last one)."""
    if b'"usage"' not in batch:
        return None
    # Metered streams carry `"usage":null` in every chunk but the last: C-speed counts skip those.
    if batch.count(b'"usage"') == batch.count(b'"usage":null') + batch.count(b'"usage": null'):
        return None
    import orjson

    from app.kernel import sse

    at = batch.rfind(b'"usage"')
    while at >= 0:  # the events that mention usage, last first, without splitting the batch
        start, end = sse.event_around(batch, at)
        event = batch[start:end]
        if b'"usage":null' not in event and b'"usage": null' not in event:
            try:
                data = orjson.loads(event.partition(b"data:")[2])
            except orjson.JSONDecodeError:
                data = None
            usage = usage_of(data.get("usage")) if isinstance(data, dict) else None
            if usage is not None:
                return usage
        at = batch.rfind(b'"usage"', 0, start)
    return None


def sse_has_output(batch: bytes) -> bool:
    """Whether a raw SSE batch of an OpenAI stream (chat or legacy completions) holds any output:
    text, a tool call, a refusal or reasoning. One C-speed search."""
    return _OUTPUT.search(batch) is not None


def chunk_has_output(chunk: ChatChunk) -> bool:
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content or delta.tool_calls:
            return True
        extra = delta.model_extra
        if extra and any(extra.get(k) for k in _OUTPUT_KEYS):
            return True
    return bool(chunk.usage and chunk.usage.completion_tokens)


def answer_has_output(data: Any) -> bool:
    """Whether a whole OpenAI answer (chat or legacy completion, as JSON) holds any output, or
    says it generated tokens."""
    if not isinstance(data, dict):
        return False
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int) and usage["completion_tokens"] > 0:
        return True
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if choice.get("text"):
            return True
        message = choice.get("message")
        if isinstance(message, dict) and any(message.get(k) for k in _OUTPUT_KEYS):
            return True
    return False


def wants_usage(wire: dict[str, Any]) -> bool:
    """Whether a stream's wire body asks for the final usage chunk."""
    options = wire.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def answer_chunks(data: dict[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """A whole OpenAI answer (`chat.completion`, or a legacy `text_completion`) as the chunks of
    the stream it would have been: one chunk per choice holding all of it (role, content, tool
    calls, finish reason), then the usage chunk when `include_usage` and the answer has usage."""
    choices = [c for c in data.get("choices") or () if isinstance(c, dict)]
    legacy = data.get("object") == "text_completion" or any("text" in c and "message" not in c for c in choices)
    head: dict[str, Any] = {
        "id": data.get("id") or "",
        "object": "text_completion" if legacy else "chat.completion.chunk",
        "created": data.get("created") or int(time.time()),
        "model": data.get("model") or "",
    }
    if data.get("system_fingerprint"):
        head["system_fingerprint"] = data["system_fingerprint"]
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    if include_usage and usage is not None:
        head["usage"] = None  # as OpenAI sends it: null on every chunk but the last
    chunks = []
    for i, choice in enumerate(choices):
        finish = choice.get("finish_reason") or "stop"  # a whole answer is a finished one
        index = choice.get("index", i)
        if legacy:
            part = {"text": choice.get("text") or "", "index": index, "logprobs": choice.get("logprobs"),
                    "finish_reason": finish}
        else:
            message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
            delta = {k: v for k, v in message.items() if v is not None}
            delta.setdefault("role", "assistant")
            content = delta.get("content")
            if isinstance(content, list):  # content parts: a delta carries text
                delta["content"] = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                delta["tool_calls"] = [{**call, "index": n} if isinstance(call, dict) else call
                                       for n, call in enumerate(calls)]
            part = {"index": index, "delta": delta, "logprobs": choice.get("logprobs"), "finish_reason": finish}
        chunks.append({**head, "choices": [part]})
    if include_usage and usage is not None:
        chunks.append({**head, "choices": [], "usage": usage})
    return chunks


def answer_events(data: dict[str, Any], *, include_usage: bool) -> bytes:
    """`answer_chunks` as one SSE batch, `data: [DONE]` included: what a client that asked for a
    stream gets when the server sent the whole answer as plain JSON instead (some do)."""
    import orjson

    events = [b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in answer_chunks(data, include_usage=include_usage)]
    return b"".join(events) + b"data: [DONE]\n\n"


def looks_like_json(rest: bytes) -> bool:
    """Whether the whole body of a "stream" is a JSON object rather than server-sent events
    (an SSE body starts with a field name, a comment or a blank line, never with `{`)."""
    return rest.lstrip()[:1] == b"{"


async def encode_sse(chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


class ObservedStream(AsyncIterator[T]):
    """A routed stream that reports how it ended (usage, outcome) exactly once.

    A class, not an async generator, so that `aclose()` on a stream nobody iterated still
    releases the deployment and records the request.
    """

    def __init__(self, inner: AsyncIterator[T], on_end: Callable[[Usage | None, str], None], *,
                 usage_of: Callable[[T], Usage | None], served_by: ModelSpec,
                 has_output: Callable[[T], bool] | None = None, raise_empty: bool = False) -> None:
        """`has_output`: whether an item holds output; a stream that ends without any (and
        without completion tokens in its usage) is recorded `empty_answer`, not `ok`, and with
        `raise_empty` its consumer gets EmptyAnswerError at the end instead of a clean stop."""
        self._inner, self._on_end, self._usage_of = inner, on_end, usage_of
        self.served_by = served_by
        self._usage: Usage | None = None
        self._ended = False
        self._has_output = has_output
        self._output = has_output is None  # no test given: every stream counts as having output
        self._raise_empty = raise_empty

    def __aiter__(self) -> ObservedStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            item = await anext(self._inner)
        except StopAsyncIteration:
            outcome = self._clean_outcome()
            self._end(outcome)
            if outcome == EMPTY_ANSWER and self._raise_empty:
                spec = self.served_by
                raise EmptyAnswerError("the model sent an empty answer (no text, no tool call, no tokens)",
                                       provider=spec.provider, model=spec.name) from None
            raise
        except ByenatosError as e:
            self._end(e.code)
            raise
        except BaseException:
            self._end("cancelled")
            raise
        usage = self._usage_of(item)
        if usage is not None:
            self._usage = usage
        if not self._output and self._has_output is not None and self._has_output(item):
            self._output = True
        return item

    def _clean_outcome(self) -> str:
        """How a stream that ended cleanly is recorded: `ok` if it carried output (or its usage
        counts completion tokens), `empty_answer` if it carried nothing."""
        if self._output or (self._usage is not None and self._usage.completion_tokens > 0):
            return "ok"
        return EMPTY_ANSWER

    def complete(self) -> None:
        """The consumer has the whole answer (an OpenAI stream's `[DONE]` went out): record the
        request as served now (`ok`, or `empty_answer` if it held nothing). Reading the
        upstream's tail after this, or closing the stream, no longer changes what was recorded."""
        self._end(self._clean_outcome())

    def _end(self, outcome: str) -> None:
        if not self._ended:
            self._ended = True
            self._on_end(self._usage, outcome)

    async def aclose(self) -> None:
        self._end("cancelled")
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()
