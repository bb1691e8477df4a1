"""`byenatos chat`: a streaming chat in the terminal, through the kernel like any app."""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.cli.output import err
from app.kernel.canonical import ChatMessage, ChatRequest
from app.kernel.errors import ByenatosError
from app.kernel.kernel import Kernel
from app.kernel.scheduler import Program, ProgramClass, run_as

HELP = "commands: /model NAME (switch), /models, /clear (forget the conversation), /exit"


async def chat(args: argparse.Namespace) -> int:
    # A person is waiting at the terminal: its calls go before agents' (app.kernel.scheduler).
    with run_as(Program("byenatos-cli", ProgramClass.INTERACTIVE)):
        return await _chat(args)


async def _chat(args: argparse.Namespace) -> int:
    async with Kernel() as kernel:
        history: list[ChatMessage] = []
        if args.system:
            history.append(ChatMessage(role="system", content=args.system))
        model = args.model
        kernel.resolve(model)  # an unknown model fails here, before any typing
        if args.prompt:
            history.append(ChatMessage(role="user", content=" ".join(args.prompt)))
            return 0 if await _answer(kernel, model, history, args) else 1
        print(f"chatting with {kernel.resolve(model)[1].id} — {HELP}", file=sys.stderr)
        while True:
            try:
                line = (await asyncio.to_thread(input, "> ")).strip()
            except EOFError:
                print(file=sys.stderr)
                return 0
            if not line:
                continue
            if line in ("/exit", "/quit"):
                return 0
            if line == "/clear":
                del history[1 if args.system else 0:]
                continue
            if line == "/models":
                print("\n".join(m.id for m in kernel.list_models()))
                continue
            if line.startswith("/model"):
                try:
                    model = kernel.resolve(line.removeprefix("/model").strip() or "default")[1].id
                    print(f"now chatting with {model}", file=sys.stderr)
                except ByenatosError as e:
                    err(str(e))
                continue
            history.append(ChatMessage(role="user", content=line))
            if not await _answer(kernel, model, history, args):
                history.pop()  # the turn failed: let the user retry it


async def _answer(kernel: Kernel, model: str, history: list[ChatMessage], args: argparse.Namespace) -> bool:
    request = ChatRequest(model=model, messages=history, stream=True, max_tokens=args.max_tokens,
                          temperature=args.temperature)
    parts: list[str] = []
    try:
        async for chunk in await kernel.stream(request, app="byenatos-cli"):
            text = chunk.text()
            if text:
                parts.append(text)
                sys.stdout.write(text)
                sys.stdout.flush()
    except ByenatosError as e:
        if parts:
            print()
        err(str(e))
        return False
    print()
    history.append(ChatMessage(role="assistant", content="".join(parts)))
    return True
