"""Approval requests: a tool call the rules say to ask about waits here for the user's answer.

`ApprovalHub.ask` writes the request (`tool_approval`), publishes `ApprovalRequested` on the
kernel's bus (the desktop's dialog, `/api/events`, `byenatos approvals` see it) and waits for
`answer` — once, always (which also writes an allow rule for that app and tool) or deny — or
for the timeout, which is a deny. The waiting is in memory: a request pending when ByenatOS
stops is marked `interrupted` at the next start, and the tool call, never recorded as done,
asks again when its run resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from app.kernel.errors import BadRequestError, ByenatosError, NotFoundError
from app.kernel.events import Event
from app.kernel.store.tool_tables import ApprovalRow
from app.kernel.tools.permissions import Decision

if TYPE_CHECKING:
    from app.kernel.events import EventBus
    from app.kernel.tools.base import Tool
    from app.kernel.tools.permissions import Permissions

MAX_SHOWN_ARGUMENTS = 20_000  # characters of a call's arguments kept for the user to read


class Answer(StrEnum):
    ONCE = "once"
    ALWAYS = "always"
    DENY = "deny"
    TIMEOUT = "timeout"  # nobody answered in time (never given by the user)


ANSWERED_STATE = {Answer.ONCE: "approved", Answer.ALWAYS: "always", Answer.DENY: "denied",
                  Answer.TIMEOUT: "expired"}
STATES = ("pending", "approved", "always", "denied", "expired", "cancelled", "interrupted")


class ApprovalAnsweredError(ByenatosError):
    """The request was answered already, expired, or its caller went away."""

    status = 409
    code = "approval_closed"


@dataclass(frozen=True, slots=True)
class ApprovalRequested(Event):
    id: int
    app: str
    pid: int | None
    tool: str
    risk: str
    source: str
    arguments: str  # the call's arguments as JSON (cut to MAX_SHOWN_ARGUMENTS)
    expires_at: float


@dataclass(frozen=True, slots=True)
class ApprovalAnswered(Event):
    id: int
    app: str
    pid: int | None
    tool: str
    answer: str  # once | always | deny | timeout | cancelled


def approval_json(row: ApprovalRow) -> dict[str, Any]:
    return {"id": row.id, "key": row.key, "app": row.app, "pid": row.pid, "tool": row.tool, "risk": row.risk,
            "source": row.source, "arguments": row.arguments, "args_sha256": row.args_sha256,
            "state": row.state, "created_at": row.created_at, "expires_at": row.expires_at,
            "answered_at": row.answered_at}


class ApprovalHub:
    def __init__(self, events: EventBus, permissions: Permissions) -> None:
        self.events = events
        self.permissions = permissions
        self._waiting: dict[int, asyncio.Future[Answer]] = {}
        self._pids: dict[int, int | None] = {}  # request id → the agent it is for
        # Left pending by a process that stopped: nobody can answer them now (their calls ask again).
        ApprovalRow.update(state="interrupted", answered_at=time.time()).where(
            ApprovalRow.state == "pending").execute()

    async def ask(self, *, app: str, pid: int | None, key: str, tool: Tool, arguments: str, args_sha256: str,
                  timeout: float, keep_arguments: bool, on_pending: Callable[[int], None] | None = None
                  ) -> Answer:
        """Until the user answers (ONCE, ALWAYS, DENY) or `timeout` seconds pass (TIMEOUT).
        `arguments`: the call's JSON, shown to the user; kept after the answer only with
        `keep_arguments` (the user's audit_prompts)."""
        now = time.time()
        shown = arguments if len(arguments) <= MAX_SHOWN_ARGUMENTS else arguments[:MAX_SHOWN_ARGUMENTS] + "…"
        row = ApprovalRow.create(key=key, app=app, pid=pid, tool=tool.name, risk=tool.risk.value,
                                 source=tool.source, arguments=shown, args_sha256=args_sha256, state="pending",
                                 created_at=now, expires_at=now + timeout)
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[row.id] = answered
        self._pids[row.id] = pid
        answer: Answer | None = None
        try:
            if on_pending is not None:
                on_pending(row.id)
            self.events.publish(ApprovalRequested(id=row.id, app=app, pid=pid, tool=tool.name,
                                                  risk=tool.risk.value, source=tool.source, arguments=shown,
                                                  expires_at=row.expires_at))
            answer = await asyncio.wait_for(asyncio.shield(answered), timeout)
        except TimeoutError:
            answer = Answer.TIMEOUT
        finally:
            self._waiting.pop(row.id, None)
            self._pids.pop(row.id, None)
            state = ANSWERED_STATE[answer] if answer is not None else "cancelled"
            if not answered.done() or answer is Answer.TIMEOUT:
                # Closed here (timeout, or the caller cancelled); `answer` wrote a user's answer itself.
                self._close(row.id, state, keep_arguments)
                self.events.publish(ApprovalAnswered(id=row.id, app=app, pid=pid, tool=tool.name,
                                                     answer=answer.value if answer is not None else "cancelled"))
            elif not keep_arguments:
                self._close(row.id, None, keep_arguments)
        assert answer is not None
        return answer

    def answer(self, approval_id: int, answer: Answer | str) -> dict[str, Any]:
        """The user's answer to a pending request; `always` also allows the tool for that app."""
        try:
            given = Answer(answer)
        except ValueError:
            given = None
        if given is None or given is Answer.TIMEOUT:
            raise BadRequestError(f"answer: one of once, always, deny, not {answer!r}")
        row = ApprovalRow.get_or_none(ApprovalRow.id == approval_id)
        if row is None:
            raise NotFoundError(f"no approval request {approval_id}; `byenatos approvals list` shows the pending ones")
        waiting = self._waiting.get(approval_id)
        if row.state != "pending" or waiting is None or waiting.done():
            raise ApprovalAnsweredError(f"approval request {approval_id} is not pending any more ({row.state})")
        if given is Answer.ALWAYS:
            self.permissions.set(row.app, row.tool, Decision.ALLOW, note=f"approval {approval_id}: always")
        self._close(approval_id, ANSWERED_STATE[given], True)
        waiting.set_result(given)
        self.events.publish(ApprovalAnswered(id=approval_id, app=row.app, pid=row.pid, tool=row.tool,
                                             answer=given.value))
        return approval_json(ApprovalRow.get_by_id(approval_id))

    def waiting_for(self, pid: int) -> int:
        """How many of agent `pid`'s calls wait for an answer now."""
        return sum(1 for p in self._pids.values() if p == pid)

    def pending(self) -> list[dict[str, Any]]:
        """The requests waiting for an answer now, oldest first."""
        ids = [i for i, f in self._waiting.items() if not f.done()]
        if not ids:
            return []
        query = ApprovalRow.select().where(ApprovalRow.id.in_(ids) & (ApprovalRow.state == "pending"))
        return [approval_json(r) for r in query.order_by(ApprovalRow.id)]

    def recent(self, *, limit: int = 100, state: str | None = None, pid: int | None = None) -> list[dict[str, Any]]:
        query = ApprovalRow.select().order_by(ApprovalRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(ApprovalRow.state == state)
        if pid is not None:
            query = query.where(ApprovalRow.pid == pid)
        return [approval_json(r) for r in query]

    def get(self, approval_id: int) -> dict[str, Any]:
        row = ApprovalRow.get_or_none(ApprovalRow.id == approval_id)
        if row is None:
            raise NotFoundError(f"no approval request {approval_id}")
        return approval_json(row)

    @staticmethod
    def _close(approval_id: int, state: str | None, keep_arguments: bool) -> None:
        changes: dict[Any, Any] = {}
        if state is not None:
            changes[ApprovalRow.state] = state
            changes[ApprovalRow.answered_at] = time.time()
        if not keep_arguments:
            changes[ApprovalRow.arguments] = None
        if changes:
            ApprovalRow.update(changes).where(ApprovalRow.id == approval_id).execute()
