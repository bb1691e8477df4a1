"""The prompt-based tool fallback on the kernel's chat path: whole answers and streams.

`Kernel._chat_on` and `Kernel._stream_on` (one attempt on one deployment) ask `applies(request,
spec)`: a request that offers `tools` to a model whose spec says `prompted_tools` is sent as
`tools.prompted.to_prompted(request)` and its answer read back with `from_prompted`, so every
caller of the kernel (the OpenAI and Anthropic routes, the Responses API, the agents' model
step, the CLI) gets canonical `tool_calls` whatever the model speaks. Decided per attempt: a
fallback to a model with tool calls of its own gets the API's `tools`.

A stream cannot be parsed before it ends, but a plain answer should not wait for its end.
`PromptedText` (one per choice) sends text on as it comes and holds it back only from the first
place a call could begin:

- a `<tool_call` tag (ours or Hermes/Qwen's): held to the end, then parsed;
- a code fence: its opening line is read; a fence of another language (```` ```python ````) goes
  out as text at once, a JSON one (or one without a language) is held until it closes;
- a `{` (or `[` then `{`): held until it is one whole JSON value, then released as text unless
  it names an offered tool. JSON that never parses (broken, or prose such as `{braces}`) is
  held to the end, where json-repair has its say;
- a piece at the very end that could begin one of these (`<tool`, a backtick, `[`) waits for
  the next piece.

Once something held is a call, the rest is held too and parsed at the end with `parse()`, the
same parser whole answers get: its text goes out as content, its calls as one `tool_calls`
delta (each with `index`, `id`, `type` and the whole `function`), and the finish reason is
`tool_calls`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from app.kernel.canonical import ChatChunk, ChatRequest, ChatResponse, ChunkChoice, Delta, ModelSpec, ToolCall
from app.kernel.tools.prompted import from_prompted, parse, to_prompted

# Where a call could begin: our tags (and Hermes/Qwen's), a fence, a JSON object or list of them.
_CANDIDATE = re.compile(r"<tool_call|```|\{|\[\s*\{", re.IGNORECASE)
_TAG_PREFIX = "<tool_call"
_OPEN_LIST = re.compile(r"\[\s*\Z")  # a `[` at the end may become `[{`
_JSON_FENCES = ("", "json", "tool_call", "tool_calls")
_LANG = re.compile(r"[A-Za-z0-9_-]*")


def applies(request: ChatRequest, spec: ModelSpec) -> bool:
    """Whether this request's tools go to this model through the prompt."""
    return bool(request.tools) and spec.capabilities.prompted_tools


def _parses(request: ChatRequest) -> bool:
    # tool_choice "none": the history's calls are rewritten as text, but no calls are offered
    return request.tool_choice != "none"


async def chat(send: Callable[[ChatRequest], Awaitable[ChatResponse]], request: ChatRequest) -> ChatResponse:
    """`send` the prompted request; the answer with its calls as `tool_calls`."""
    answer = await send(to_prompted(request))
    return from_prompted(answer, request.tools) if _parses(request) else answer


async def stream(send: Callable[[ChatRequest], AsyncIterator[ChatChunk]], request: ChatRequest
                 ) -> AsyncIterator[ChatChunk]:
    """`send` the prompted request; its chunks, with the calls in its text as tool-call deltas."""
    chunks = send(to_prompted(request))
    if not _parses(request):
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                yield chunk
        return
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in calls_in_stream(chunks, request.tools):
            yield chunk


async def calls_in_stream(chunks: AsyncIterator[ChatChunk], tools: list[dict[str, Any]] | None
                          ) -> AsyncIterator[ChatChunk]:
    """`chunks` of a prompted answer, its text streamed as far as it cannot be a call."""
    known = {str((t.get("function") or {}).get("name")) for t in tools or []}
    texts: dict[int, PromptedText] = {}
    last: ChatChunk | None = None
    async for chunk in chunks:
        last = chunk
        out: list[ChunkChoice] = []
        tail: list[ChunkChoice] = []
        for choice in chunk.choices:
            text = texts.setdefault(choice.index, PromptedText(known))
            delta = choice.delta
            safe = text.feed(delta.content or "") if not text.done else (delta.content or "")
            if choice.finish_reason is None or text.done:
                if safe or delta.role or delta.tool_calls or choice.finish_reason is not None:
                    out.append(choice.model_copy(update={"delta": delta.model_copy(update={"content": safe or None})}))
                continue
            rest, calls = text.finish()
            content = (safe + rest) or None
            if calls:
                if content or delta.role:
                    out.append(ChunkChoice(index=choice.index, delta=Delta(role=delta.role, content=content)))
                tail.append(ChunkChoice(index=choice.index, delta=Delta(tool_calls=[
                    call.model_copy(update={"index": i}) for i, call in enumerate(calls)])))
                tail.append(ChunkChoice(index=choice.index, delta=Delta(), finish_reason="tool_calls"))
            else:
                out.append(choice.model_copy(update={"delta": delta.model_copy(update={"content": content})}))
        if tail:  # the text first, then the calls, then the finish (how OpenAI streams them)
            if out:
                yield chunk.model_copy(update={"choices": out, "usage": None})
            for i, choice in enumerate(tail):
                final = i == len(tail) - 1
                yield chunk.model_copy(update={"choices": [choice], "usage": chunk.usage if final else None})
        elif out or chunk.usage is not None or not chunk.choices:
            yield chunk.model_copy(update={"choices": out})
    # A stream that ended without a finish reason: what was held still goes out.
    for index, text in texts.items():
        if text.done or last is None:
            continue
        rest, calls = text.finish()
        choices = [ChunkChoice(index=index, delta=Delta(content=rest))] if rest else []
        if calls:
            choices.append(ChunkChoice(index=index, delta=Delta(tool_calls=[
                call.model_copy(update={"index": i}) for i, call in enumerate(calls)])))
            choices.append(ChunkChoice(index=index, delta=Delta(), finish_reason="tool_calls"))
        for choice in choices:
            yield ChatChunk(id=last.id, created=last.created, model=last.model, choices=[choice])


class PromptedText:
    """One choice's streamed text: `feed` a piece, get what can go out now; `finish` at the end
    for the rest and the calls (see the module's docstring)."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.held = ""
        self.mode: str | None = None  # None: scanning; "json", "fence": a candidate; "all": held to the end
        self.done = False

    def feed(self, piece: str) -> str:
        self.held += piece
        out: list[str] = []
        while True:
            if self.mode is None:
                match = _CANDIDATE.search(self.held)
                if match is None:
                    keep = _partial(self.held)
                    cut = len(self.held) - keep
                    out.append(self.held[:cut])
                    self.held = self.held[cut:]
                    break
                out.append(self.held[:match.start()])
                self.held = self.held[match.start():]
                first = self.held[0]
                self.mode = "all" if first == "<" else "fence" if first == "`" else "json"
            if self.mode == "all":
                break
            end = self._closed()
            if end is None:
                break
            if end < 0:  # a fence of another language: its opening line is text
                end = -end
            elif parse(self.held[:end], self.known)[1]:
                self.mode = "all"  # a call: everything from here is parsed at the end
                break
            out.append(self.held[:end])
            self.held = self.held[end:]
            self.mode = None
        return "".join(out)

    def _closed(self) -> int | None:
        """Where the held candidate ends (then it is parsed), minus that for text to release
        without parsing, or None while it is not complete."""
        held = self.held
        if self.mode == "fence":
            newline = held.find("\n", 3)
            if newline < 0:
                return None
            lang = held[3:newline].strip()
            plain = _LANG.fullmatch(lang) is not None  # else the fence's content began on its line
            if plain and lang.lower() not in _JSON_FENCES:
                return -(newline + 1)
            close = held.find("```", newline if plain else 3)
            return close + 3 if close >= 0 else None
        try:
            _, end = json.JSONDecoder().raw_decode(held)
        except ValueError:
            return None
        return end

    def finish(self) -> tuple[str, list[ToolCall]]:
        """The text still held and the calls in it (none when it asks for none)."""
        self.done = True
        held, self.held = self.held, ""
        if not held:
            return "", []
        text, calls = parse(held, self.known)
        return (text, calls) if calls else (held, [])


def _partial(text: str) -> int:
    """How many characters at the end of `text` could begin a candidate (wait for more)."""
    lowered = text[-len(_TAG_PREFIX):].lower()
    for k in range(min(len(lowered), len(_TAG_PREFIX) - 1), 0, -1):
        if _TAG_PREFIX.startswith(lowered[-k:]):
            return k
    ticks = len(text) - len(text.rstrip("`"))
    if ticks:
        return min(ticks, 2)
    match = _OPEN_LIST.search(text)
    return len(text) - match.start() if match else 0
