"""An agent process: its states, the transitions between them, its usage and its quotas.

The states are an operating system's, with the waits an agent has: for the model, for a
tool, for the user's approval of a tool call, for a message. `TRANSITIONS` is the whole
state machine; anything else is refused with `IllegalTransitionError` (HTTP 409).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from app.kernel.errors import BadRequestError, ByenatosError


class ProcessState(enum.StrEnum):
    READY = "ready"  # spawned or resumed, not running yet
    RUNNING = "running"
    WAITING_MODEL = "waiting_model"
    WAITING_TOOL = "waiting_tool"
    WAITING_APPROVAL = "waiting_approval"
    WAITING_INPUT = "waiting_input"  # a conversation agent between the user's messages
    SUSPENDED = "suspended"  # by the user, or by a quota (see `reason`)
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def live(self) -> bool:
        """Running or waiting: its run is (or should be) executing right now."""
        return self in _LIVE


_TERMINAL = frozenset({ProcessState.DONE, ProcessState.FAILED, ProcessState.KILLED})
_WAITS = frozenset({ProcessState.WAITING_MODEL, ProcessState.WAITING_TOOL, ProcessState.WAITING_APPROVAL,
                    ProcessState.WAITING_INPUT})
_LIVE = frozenset({ProcessState.READY, ProcessState.RUNNING, *_WAITS})

S = ProcessState
TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    S.READY: frozenset({S.RUNNING, S.SUSPENDED, S.KILLED, S.FAILED}),
    S.RUNNING: frozenset({*_WAITS, S.SUSPENDED, S.DONE, S.FAILED, S.KILLED}),
    **{w: frozenset({S.RUNNING, S.SUSPENDED, S.FAILED, S.KILLED}) for w in _WAITS},
    S.SUSPENDED: frozenset({S.READY, S.KILLED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.KILLED: frozenset(),
}


class IllegalTransitionError(ByenatosError):
    """The agent cannot go there from where it is (resume a running agent, kill a dead one)."""

    status = 409
    code = "illegal_transition"


def check_transition(pid: int, current: ProcessState, target: ProcessState, action: str) -> None:
    if target not in TRANSITIONS[current]:
        if current.terminal:
            why = f"it has already ended ({current.value})"
        elif target is S.READY and current is not S.SUSPENDED:
            why = f"it is not suspended (it is {current.value.replace('_', ' ')})"
        else:
            why = f"it is {current.value.replace('_', ' ')}"
        raise IllegalTransitionError(f"cannot {action} agent {pid}: {why}")


class Priority(enum.StrEnum):
    """Scheduling class of an agent's LLM calls (interactive callers go first; nothing starves)."""

    INTERACTIVE = "interactive"
    NORMAL = "normal"
    BACKGROUND = "background"


@dataclass(slots=True)
class Usage:
    """What a process has consumed so far."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    calls: int = 0  # LLM calls
    steps: int = 0  # loop iterations (one LLM call and the tool calls it asked for)
    tool_calls: int = 0
    wall_s: float = 0.0  # time spent running (waits for the model and tools included, suspensions not)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens, "cost": round(self.cost, 6), "wall_s": round(self.wall_s, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(slots=True)
class Quotas:
    """Limits per agent; None is unlimited. Reaching one suspends the agent with the reason."""

    tokens: int | None = None
    cost: float | None = None
    steps: int | None = None
    tool_calls: int | None = None
    wall_s: float | None = None

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequestError(f"quota {name!r} must be a number, not {value!r}")
            if value <= 0:
                raise BadRequestError(f"quota {name!r} must be greater than 0 (leave it out for no limit)")

    def exceeded(self, usage: Usage, *, before: str = "model") -> str | None:
        """The first quota `usage` has reached, in words; None if within all of them. `before`:
        what is about to run: a "model" call (a new step), or a "tool" call of the current step
        (the steps quota counts steps begun, so it does not stop the tools of the last one)."""
        checks = [
            ("tokens", usage.tokens, "tokens"), ("cost", usage.cost, "cost"), ("steps", usage.steps, "steps"),
            ("tool_calls", usage.tool_calls, "tool calls"), ("wall_s", usage.wall_s, "seconds of running time"),
        ]
        if before == "tool":
            checks = [c for c in checks if c[0] != "steps"]
        for name, used, words in checks:
            limit = getattr(self, name)
            if limit is not None and used >= limit:
                shown = f"{used:.4g}" if isinstance(used, float) else str(used)
                return f"quota reached: {shown} of {limit:g} {words}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Quotas:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise BadRequestError(
                f"unknown quota {sorted(unknown)[0]!r}; quotas are {', '.join(cls.__dataclass_fields__)}")
        return cls(**data)

    def merged(self, changes: dict[str, Any]) -> Quotas:
        """These quotas with `changes` applied (a value of None removes that limit)."""
        base = self.to_dict()
        for key, value in changes.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return Quotas.from_dict(base)


@dataclass(slots=True)
class AgentProcess:
    """A row of the process table, as the API, the CLI and the UI see it."""

    pid: int
    name: str
    kind: str  # kernel | external
    state: ProcessState
    app: str
    priority: Priority = Priority.NORMAL
    parent: int | None = None
    task: str = ""
    quotas: Quotas = field(default_factory=Quotas)
    usage: Usage = field(default_factory=Usage)
    reason: str = ""
    result: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "name": self.name, "kind": self.kind, "state": self.state.value, "app": self.app,
            "priority": self.priority.value, "parent": self.parent, "task": self.task,
            "quotas": self.quotas.to_dict(), "usage": self.usage.to_dict(), "reason": self.reason,
            "result": self.result, "created_at": self.created_at, "started_at": self.started_at,
            "ended_at": self.ended_at,
        }
