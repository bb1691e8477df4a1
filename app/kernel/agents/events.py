"""Typed events of the agent kernel, on the kernel's bus (the UI's bridge and /api/events see them)."""

from __future__ import annotations

from dataclasses import dataclass

from app.kernel.events import Event


@dataclass(frozen=True, slots=True)
class AgentStateChanged(Event):
    pid: int
    agent: str  # its name
    state: str  # a ProcessState value
    previous: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AgentLogged(Event):
    """One new entry of an agent's log (a step, a page-out, a message, a state change)."""

    pid: int
    seq: int
    kind: str
    summary: str
