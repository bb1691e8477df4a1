"""Paged context: an agent's conversation fitted into its model's window, like virtual memory.

The conversation itself only grows (it is the run's durable state); what each model call gets
is a *view* of it that fits the window of the model serving it now:

- pinned: the system instructions and the task (the first user message);
- resident: the newest turns, as many as fit;
- paged out: older turns, replaced by one line saying how many steps are out and what the
  agent can do about it; they stay in the conversation, verbatim;
- paged in: the paged-out turns most relevant to the latest turn (by shared words), brought
  back while they fit, oldest first, so that an early fact the agent needs again is there.

A turn is never split: an assistant message that called tools travels with the tool results
it got (a tool result without its call is an invalid request). Token counts are real (the
model family's tokenizer, as sessions use), so a swap to a model with a smaller window refits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.kernel.canonical import ModelSpec
from app.kernel.errors import ContextWindowExceededError
from app.kernel.tokens import REPLY_PRIMING, count_message_tokens

_WORD = re.compile(r"\w{3,}", re.UNICODE)
PAGE_IN_MAX = 4  # turns brought back per call at most


@dataclass(slots=True)
class Fitted:
    messages: list[dict[str, Any]]
    paged_out: list[int] = field(default_factory=list)  # indices (into the turns) left out of this call
    paged_in: list[int] = field(default_factory=list)  # paged-out turns brought back by relevance
    tokens: int = 0


def turns(messages: list[dict[str, Any]], pinned: int) -> list[list[int]]:
    """Indices of the messages after the pinned ones, grouped into turns that stay together."""
    groups: list[list[int]] = []
    for i in range(pinned, len(messages)):
        role = messages[i].get("role")
        if role == "tool" and groups:
            groups[-1].append(i)  # with the assistant message that called it
        else:
            groups.append([i])
    return groups


def pinned_count(messages: list[dict[str, Any]]) -> int:
    """The leading system messages and the first user message (the task)."""
    n = 0
    while n < len(messages) and messages[n].get("role") in ("system", "developer"):
        n += 1
    if n < len(messages) and messages[n].get("role") == "user":
        n += 1
    return n


def _words(message: dict[str, Any]) -> set[str]:
    content = message.get("content")
    text = content if isinstance(content, str) else str(content or "")
    for call in message.get("tool_calls") or ():
        text += " " + str((call.get("function") or {}).get("arguments") or "")
    return {w.lower() for w in _WORD.findall(text)}


def fit(messages: list[dict[str, Any]], spec: ModelSpec, *, reserve_output: int, summary: str = "") -> Fitted:
    """The view of `messages` that fits `spec`'s window with `reserve_output` tokens to spare;
    `summary`, the model's summary of paged-out turns (app.kernel.agents.summaries), goes in
    the note that stands for them."""
    budget = spec.context_window - reserve_output - REPLY_PRIMING
    sizes = [count_message_tokens(spec, m) for m in messages]
    if sum(sizes) <= budget:
        return Fitted(list(messages), tokens=sum(sizes))
    pin = pinned_count(messages)
    groups = turns(messages, pin)
    cost = [sum(sizes[i] for i in g) for g in groups]
    note = {"role": "user", "content": (
        "[{n} earlier step(s) of this task are paged out of the context to fit the model's window; they "
        "are in the agent's log. Ask again, or search memory, for anything you need from them.]"
        + ("\n[Summary of the earlier steps: " + summary + "]" if summary else ""))}
    note_tokens = count_message_tokens(spec, {**note, "content": note["content"].replace("{n}", str(len(groups)), 1)})
    left = budget - sum(sizes[:pin]) - note_tokens
    if not groups or cost[-1] > left:
        raise ContextWindowExceededError(
            f"the agent's instructions, task and latest step need more than {spec.id}'s window of "
            f"{spec.context_window} tokens", model=spec.name, provider=spec.provider)
    # The newest turns first, in three quarters of the room (the latest always); the rest is
    # for paged-out turns that matter to the latest one.
    resident = [len(groups) - 1]
    room = left - cost[-1]
    resident_room = room - room // 4
    for g in range(len(groups) - 2, -1, -1):
        if cost[g] > resident_room:
            break
        resident.append(g)
        resident_room -= cost[g]
        room -= cost[g]
    kept = set(resident)
    latest = set().union(*(_words(messages[i]) for i in groups[-1]))
    scored = []
    for g in range(len(groups)):
        if g in kept:
            continue
        overlap = len(latest & set().union(*(_words(messages[i]) for i in groups[g])))
        if overlap >= 2:
            scored.append((overlap, g))
    paged_in: list[int] = []
    for _overlap, g in sorted(scored, reverse=True)[:PAGE_IN_MAX]:
        if cost[g] <= room:
            paged_in.append(g)
            room -= cost[g]
    view = sorted(kept | set(paged_in))
    paged_out = [g for g in range(len(groups)) if g not in set(view)]
    note["content"] = note["content"].replace("{n}", str(len(paged_out)), 1)
    kept_messages = [messages[i] for i in range(pin)] + [note] + [messages[i] for g in view for i in groups[g]]
    used = sum(sizes[:pin]) + note_tokens + sum(cost[g] for g in view)
    return Fitted(kept_messages, paged_out=paged_out, paged_in=sorted(paged_in), tokens=used)
