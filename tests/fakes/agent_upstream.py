"""A fake OpenAI server that answers like a tool-using model, for agent tests.

`script(body)` decides each answer from the request: a string is a final answer, a list of
(name, arguments) pairs is an answer asking for those tool calls (all in one message). The
default script asks for the tools in `plan`, one round each, then answers with what the last
tool returned. `gate`, when set to an unset asyncio.Event, holds every chat request until it
is set; `waiting` counts the held ones (a test kills the daemon while agents wait on the model).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAI

Decision = str | list[tuple[str, dict[str, Any]]]


def rounds_done(body: dict[str, Any]) -> int:
    """How many tool rounds the conversation in `body` has had."""
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant" and m.get("tool_calls"))


def last_tool_result(body: dict[str, Any]) -> str | None:
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "tool":
            return str(m.get("content"))
    return None


class AgentUpstream(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__()
        self.plan: list[list[tuple[str, dict[str, Any]]]] = []  # tool calls per round
        self.script: Callable[[dict[str, Any]], Decision] = self._follow_plan
        self.gate: asyncio.Event | None = None
        self.held: Callable[[dict[str, Any]], bool] | None = None  # which requests the gate holds (None: all)
        self.scripted_streams = False  # True: streamed requests follow the script too (as OpenAI streams them)
        self.waiting = 0
        self.chat_bodies: list[dict[str, Any]] = []
        self._arrivals = asyncio.Condition()

    def _follow_plan(self, body: dict[str, Any]) -> Decision:
        done = rounds_done(body)
        if body.get("tools") and done < len(self.plan):
            return self.plan[done]
        result = last_tool_result(body)
        return f"Final answer. Last tool said: {result}" if result is not None else "Final answer."

    async def wait_waiting(self, n: int) -> None:
        """Until `n` chat requests are held at the gate."""
        async with self._arrivals:
            await self._arrivals.wait_for(lambda: self.waiting >= n)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request["json"]
        if body.get("stream") and not self.scripted_streams:
            return await super()._chat(request)
        self.chat_bodies.append(body)
        if self.gate is not None and not self.gate.is_set() and (self.held is None or self.held(body)):
            async with self._arrivals:
                self.waiting += 1
                self._arrivals.notify_all()
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        if self.latency:
            await asyncio.sleep(self.latency)
        decision = self.script(body)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(decision, str):
            message["content"] = decision
        else:
            message["tool_calls"] = [
                {"id": f"call_{next(self._ids)}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for name, args in decision]
        prompt = sum(len(str(m.get("content") or "")) for m in body.get("messages", [])) // 4 + 1
        if body.get("stream"):
            return await self._stream_decision(request, body, message, prompt)
        return web.json_response({
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "stop" if isinstance(decision, str) else "tool_calls"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": 7, "total_tokens": prompt + 7},
        })


    async def _stream_decision(self, request: web.Request, body: dict[str, Any], message: dict[str, Any],
                               prompt: int) -> web.StreamResponse:
        """The scripted answer as OpenAI streams it: text in two pieces; each tool call's id and
        name first, then its arguments in two pieces; then finish_reason and usage."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model")}

        async def send(delta: dict[str, Any], finish: str | None = None, usage: dict | None = None) -> None:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                chunk["usage"] = usage
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        await send({"role": "assistant", "content": ""})
        text = message.get("content") or ""
        if text:
            half = len(text) // 2
            await send({"content": text[:half]})
            await send({"content": text[half:]})
        for index, call in enumerate(message.get("tool_calls") or []):
            args = call["function"]["arguments"]
            await send({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                        "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                await send({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        await send({}, "tool_calls" if message.get("tool_calls") else "stop",
                   {"prompt_tokens": prompt, "completion_tokens": 7, "total_tokens": prompt + 7})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest_asyncio.fixture
async def agent_upstream():
    """A running AgentUpstream on 127.0.0.1 (its gate, if a test left one shut, opened at the end)."""
    fake = await AgentUpstream().start()
    try:
        yield fake
    finally:
        if fake.gate is not None:
            fake.gate.set()
        await fake.stop()
