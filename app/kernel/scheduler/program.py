"""Who an LLM call belongs to: its program, carried in a context variable.

A *program* is what the scheduler is fair between (Autellix's unit): an app calling through
the gateway, or one agent process. Every call a program makes counts towards its attained
service, whichever task makes it. A call finds its program in `current_program`, set by

- the gateway, for each request it routes (the calling app, `interactive` unless the app
  says otherwise with `X-ByenatOS-Priority`, or runs as an agent: `Scheduler.assign`);
- the agent kernel, around the steps of each kernel-run agent (`run_as`);
- nobody, for the kernel's own calls: they run as `INTERNAL` (class `normal`).

    with run_as(Program("research-notes#12", ProgramClass.BACKGROUND)):
        await kernel.chat(request)       # queued as a background call of that program

The context variable follows the code into the tasks it starts (asyncio copies the context),
so an agent's parallel tool-calling steps count as one program.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from app.kernel.errors import BadRequestError, PermissionDeniedError

PRIORITY_HEADER = "X-ByenatOS-Priority"
#: What the header may say (the OpenAPI document states the same pattern).
PRIORITY_PATTERN = r"^(interactive|normal|background)(?:; ?priority=([0-9]{1,4}))?$"
MAX_PRIORITY = 1000


class ProgramClass(enum.StrEnum):
    """How urgent a program's calls are. Interactive calls (a person is waiting: the popup, a
    chat app) go before normal ones, normal before background ones, under every policy but
    FIFO; the starvation bound keeps the last from waiting for ever."""

    INTERACTIVE = "interactive"
    NORMAL = "normal"
    BACKGROUND = "background"

    @property
    def rank(self) -> int:
        """0 for the most urgent class."""
        return _RANK[self]


#: ProgramClass → its rank (0 for the most urgent), as a plain dict for the queue's hot paths
CLASS_RANK = {ProgramClass.INTERACTIVE: 0, ProgramClass.NORMAL: 1, ProgramClass.BACKGROUND: 2}
_RANK = CLASS_RANK
_CLASSES = ", ".join(c.value for c in ProgramClass)
_PRIORITY = re.compile(PRIORITY_PATTERN)


@dataclass(frozen=True, slots=True)
class Program:
    """A caller the scheduler tells apart: `id` (an app id or an agent's pid), its class, and a
    priority (≥ 0, higher first; only the `priority` policy looks at it)."""

    id: str
    class_: ProgramClass = ProgramClass.NORMAL
    priority: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise BadRequestError(f"a program needs an id (an app id or an agent pid), not {self.id!r}")
        if not isinstance(self.class_, ProgramClass):
            object.__setattr__(self, "class_", parse_class(self.class_))
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise BadRequestError(f"a program's priority is a whole number from 0 to {MAX_PRIORITY}, "
                                  f"not {self.priority!r}")
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise BadRequestError(f"a program's priority is from 0 to {MAX_PRIORITY} (higher goes first), "
                                  f"not {self.priority}")

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "class": self.class_.value, "priority": self.priority}


def parse_class(value: object) -> ProgramClass:
    try:
        return ProgramClass(str(value).strip().lower())
    except ValueError:
        raise BadRequestError(f"unknown program class {value!r}; use one of {_CLASSES}") from None


#: The kernel's own calls, made outside any program (background work of the kernel itself,
#: the CLI's chat): treated as one `normal` program.
INTERNAL = Program("kernel", ProgramClass.NORMAL)

current_program: ContextVar[Program | None] = ContextVar("byenatos_program", default=None)


@contextlib.contextmanager
def run_as(program: Program) -> Iterator[Program]:
    """Run the block (and the tasks it starts) as `program`; the previous program after it."""
    token = current_program.set(program)
    try:
        yield program
    finally:
        current_program.reset(token)


def lowered(base: Program, header: str | None, *, admin: bool = False) -> Program:
    """`base` as the `X-ByenatOS-Priority` header of one request asks: `<class>` or
    `<class>; priority=<n>`, e.g. `background` or `normal; priority=2` (PRIORITY_PATTERN).

    A request may lower itself (a less urgent class, a lower priority), never raise itself
    above its program (an app's is `interactive`, priority 0; an agent's is its agent file's),
    unless the caller has the admin scope. BadRequestError for a value that does not parse,
    PermissionDeniedError for one that asks for more."""
    if header is None:
        return base
    match = _PRIORITY.match(header)
    if match is None:
        raise BadRequestError(f"{PRIORITY_HEADER}: {header!r} does not parse; send `<class>` or "
                              f"`<class>; priority=<n>`, with a class of {_CLASSES} (lower case) and n "
                              f"from 0 to {MAX_PRIORITY}")
    cls = ProgramClass(match[1])
    priority = base.priority if match[2] is None else int(match[2])
    if priority > MAX_PRIORITY:
        raise BadRequestError(f"{PRIORITY_HEADER}: priority {priority} is above {MAX_PRIORITY}")
    if not admin and (cls.rank < base.class_.rank or priority > base.priority):
        raise PermissionDeniedError(
            f"{PRIORITY_HEADER}: {header!r} asks for more than its program {base.id!r} runs as "
            f"({base.class_.value}, priority {base.priority}); a request may only lower itself (the admin "
            "scope may raise it)")
    if cls is base.class_ and priority == base.priority:
        return base
    return Program(base.id, cls, priority)
