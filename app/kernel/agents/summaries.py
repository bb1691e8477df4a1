"""Summaries of paged-out turns, written by the model, when the agent file allows it.

Paged out verbatim, old turns leave the view with one line saying they are gone. With
`summarize_paged = true` in its agent file, the agent keeps a running summary of them instead
(MemGPT's recursive summary): when turns leave the view for the first time, the serving model
folds them into the summary it had, and the summary travels in the view where the note is.

The summary is part of the view, not of the conversation: it is rebuilt (one model call) after
a restart rather than replayed, since the conversation it summarizes is what is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.kernel.canonical import ModelSpec

INSTRUCTIONS = (
    "You summarize the earlier steps of an AI agent's task so it can go on without them. Keep every fact, "
    "name, number, file, decision and result the agent may need again; drop chatter. Write plain sentences, "
    "at most {words} words. Answer with the summary only.")
MAX_STEP_CHARS = 2_000  # of one message, in what the summarizer reads


@dataclass(slots=True)
class RunningSummary:
    text: str = ""
    upto: int = 0  # turns [0, upto) are in it


def summary_budget(spec: ModelSpec) -> int:
    """Tokens the summary may take in the view: an eighth of the window, at most 512."""
    return max(32, min(512, spec.context_window // 8))


def request_messages(previous: str, turns: list[list[dict[str, Any]]], spec: ModelSpec) -> list[dict[str, Any]]:
    """The summarizer's request: the summary so far and the turns to fold in, within half the window."""
    room = spec.context_window * 2  # characters: about half the window at ~4 characters a token
    lines: list[str] = []
    for turn in turns:
        for m in turn:
            text = m.get("content") if isinstance(m.get("content"), str) else ""
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                text += f" [called {fn.get('name')}({str(fn.get('arguments') or '')[:300]})]"
            lines.append(f"{m.get('role')}: {str(text)[:MAX_STEP_CHARS]}")
    body = "\n".join(lines)
    if len(body) > room:
        body = "…" + body[-room:]  # the newest of what is paged out matters most
    words = summary_budget(spec) * 3 // 4
    user = (f"Summary so far:\n{previous}\n\n" if previous else "") + f"Steps to fold in:\n{body}"
    return [{"role": "system", "content": INSTRUCTIONS.format(words=words)}, {"role": "user", "content": user}]
