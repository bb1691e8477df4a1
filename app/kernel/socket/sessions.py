"""Conversations that survive a swap: stored sessions, and trimming a history to a model's window.

A session talks to a socket alias, not to a model, so after a swap it simply continues
on whatever the alias serves now; each assistant message records which model wrote it,
so the history shows where a swap happened ("answered by X"). Messages are canonical
OpenAI dicts (tool calls and tool results included), one SQLite row each: an `append`
that returned is committed and survives the process being killed.

`trim_to_window` fits a history to a model's context window by real token counts
(`tokens.py`): it drops whole turns, oldest first — a turn is a user message and every
reply to it, so an assistant's tool calls always go together with their results and the
kept history still starts with a user message. System prompts and the latest user
message, with anything after it (an agent loop in progress), are always kept.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from peewee import SqliteDatabase, fn
from pydantic import ValidationError

from app.kernel.canonical import ChatMessage, ModelSpec, new_id
from app.kernel.errors import BadRequestError, ContextWindowExceededError, NotFoundError
from app.kernel.store.socket_tables import SessionMessageRow, SessionRow
from app.kernel.tokens import REPLY_PRIMING, TextCounter, count_message_tokens

_SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    alias: str
    app: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    closed_at: float | None = None
    message_count: int = 0

    @property
    def open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored message with what the history view needs beside it."""

    seq: int
    message: dict[str, Any]
    model: str | None  # the model that answered, for assistant messages
    created_at: float


class SessionStore:
    """Sessions in the kernel's SQLite database. Calls are short local writes, made on the loop."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def create(
        self,
        alias: str = "default",
        app: str | None = None,
        system: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        if not isinstance(alias, str) or not alias.strip():
            raise BadRequestError("a session needs the alias it talks to (e.g. 'default')")
        if metadata is not None and not isinstance(metadata, dict):
            raise BadRequestError("session metadata must be a JSON object")
        now = time.time()
        with self._db.atomic("IMMEDIATE"):
            row = SessionRow.create(
                id=new_id("sess"),
                alias=alias,
                app=app,
                metadata=metadata or {},
                created_at=now,
                updated_at=now,
            )
            if system:
                SessionMessageRow.create(
                    session=row.id, seq=0, message={"role": "system", "content": system}, created_at=now
                )
        return self.get(row.id)

    def get(self, id: str) -> Session:
        row = self._row(id)
        count = SessionMessageRow.select().where(SessionMessageRow.session == id).count()
        return _session(row, count)

    def append(self, id: str, message: Mapping[str, Any] | ChatMessage, *, model: str | None = None) -> Turn:
        """Add a message; `model` is the one that wrote it (assistant turns). Durable on return."""
        stored = _canonical(message)
        now = time.time()
        with self._db.atomic("IMMEDIATE"):  # the write lock first: the next seq is ours
            row = self._row(id)
            if row.closed_at is not None:
                raise BadRequestError(f"session {id} is closed; start a new one to continue")
            last = (
                SessionMessageRow.select(fn.MAX(SessionMessageRow.seq))
                .where(SessionMessageRow.session == id)
                .scalar()
            )
            seq = 0 if last is None else last + 1
            SessionMessageRow.create(session=id, seq=seq, message=stored, model=model, created_at=now)
            SessionRow.update(updated_at=now).where(SessionRow.id == id).execute()
        return Turn(seq=seq, message=stored, model=model, created_at=now)

    def history(self, id: str) -> builtins.list[dict[str, Any]]:
        """The messages, oldest first, ready to send to a model."""
        return [t.message for t in self.turns(id)]

    def turns(self, id: str) -> builtins.list[Turn]:
        """The messages with the model that answered each, for showing a history."""
        self._row(id)
        rows = (
            SessionMessageRow.select().where(SessionMessageRow.session == id).order_by(SessionMessageRow.seq)
        )
        return [Turn(seq=r.seq, message=r.message, model=r.model, created_at=r.created_at) for r in rows]

    def update(self, id: str, *, system: str | None = None, metadata: dict[str, Any] | None = None) -> Session:
        """Replace the session's system prompt (the first system message, or a new one placed
        before every other message) and/or its metadata. Durable on return."""
        if metadata is not None and not isinstance(metadata, dict):
            raise BadRequestError("session metadata must be a JSON object")
        now = time.time()
        with self._db.atomic("IMMEDIATE"):
            row = self._row(id)
            if row.closed_at is not None:
                raise BadRequestError(f"session {id} is closed; start a new one to continue")
            if system is not None:
                rows = SessionMessageRow.select().where(SessionMessageRow.session == id).order_by(SessionMessageRow.seq)
                first = next(iter(rows), None)
                if first is not None and first.message.get("role") == "system":
                    SessionMessageRow.update(message={"role": "system", "content": system}, created_at=now).where(
                        SessionMessageRow.id == first.id).execute()
                else:  # seq orders the history: one below the first keeps the prompt first
                    seq = -1 if first is None else min(first.seq, 0) - 1
                    SessionMessageRow.create(session=id, seq=seq, message={"role": "system", "content": system},
                                             created_at=now)
            changes: dict[Any, Any] = {SessionRow.updated_at: now}
            if metadata is not None:
                changes[SessionRow.metadata] = metadata
            SessionRow.update(changes).where(SessionRow.id == id).execute()
        return self.get(id)

    def close(self, id: str) -> Session:
        """End a session (SESSION_AWARE swaps wait for this); its history stays readable. Idempotent."""
        row = self._row(id)
        if row.closed_at is None:
            now = time.time()
            SessionRow.update(closed_at=now, updated_at=now).where(SessionRow.id == id).execute()
        return self.get(id)

    def list(self, app: str | None = None, open_only: bool = True) -> builtins.list[Session]:
        """Sessions, most recently active first."""
        query = SessionRow.select().order_by(SessionRow.updated_at.desc(), SessionRow.id)
        if app is not None:
            query = query.where(SessionRow.app == app)
        if open_only:
            query = query.where(SessionRow.closed_at.is_null())
        rows = list(query)
        counts = dict(
            SessionMessageRow.select(SessionMessageRow.session, fn.COUNT(SessionMessageRow.id))
            .where(SessionMessageRow.session.in_([r.id for r in rows]))
            .group_by(SessionMessageRow.session)
            .tuples()
        )
        return [_session(row, counts.get(row.id, 0)) for row in rows]

    def delete(self, id: str) -> bool:
        """Forget a session and all its messages. False if there was none."""
        with self._db.atomic("IMMEDIATE"):
            SessionMessageRow.delete().where(SessionMessageRow.session == id).execute()
            return bool(SessionRow.delete().where(SessionRow.id == id).execute())

    def _row(self, id: str) -> SessionRow:
        row = SessionRow.get_or_none(SessionRow.id == id)
        if row is None:
            raise NotFoundError(f"no session {id!r}")
        return row


def _session(row: SessionRow, count: int) -> Session:
    return Session(
        id=row.id,
        alias=row.alias,
        app=row.app,
        metadata=row.metadata or {},
        created_at=row.created_at,
        updated_at=row.updated_at,
        closed_at=row.closed_at,
        message_count=count,
    )


def _canonical(message: Mapping[str, Any] | ChatMessage) -> dict[str, Any]:
    """A validated, canonical message dict; a readable error naming the bad field otherwise."""
    if isinstance(message, ChatMessage):
        return message.model_dump(exclude_none=True)
    if not isinstance(message, Mapping):
        raise BadRequestError(f"a message is a JSON object with a role, not {type(message).__name__}")
    try:
        return ChatMessage.model_validate(dict(message)).model_dump(exclude_none=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "message"
        raise BadRequestError(f"message.{where}: {err['msg']}") from None


# ── fitting a history to a window ───────────────────────────────────────────

M = TypeVar("M")


def trim_to_window(
    messages: Sequence[M],
    spec: ModelSpec,
    *,
    reserve_output: int,
    tokenizer: TextCounter | None = None,
) -> list[M]:
    """The messages that fit `spec.context_window - reserve_output` tokens, oldest turns dropped first.

    Returns the kept messages themselves (not copies), in their order. Raises
    ContextWindowExceededError if the system prompt(s) plus the latest user message (and
    what follows it) do not fit on their own.
    """
    budget = spec.context_window - reserve_output
    dicts = [m if isinstance(m, Mapping) else m.model_dump(exclude_none=True) for m in messages]  # type: ignore[attr-defined]
    sizes = [count_message_tokens(spec, m, tokenizer=tokenizer) for m in dicts]
    total = REPLY_PRIMING + sum(sizes)
    if total <= budget:
        return list(messages)

    roles = [m.get("role") for m in dicts]
    systems = {i for i, role in enumerate(roles) if role in _SYSTEM_ROLES}
    others = [i for i in range(len(dicts)) if i not in systems]
    users = [i for i in others if roles[i] == "user"]
    # the request itself: the latest user message and whatever follows it (tool round trips)
    keep_from = users[-1] if users else (others[-1] if others else len(dicts))
    turns: list[list[int]] = []
    for i in others:
        if i >= keep_from:
            break
        if not turns or roles[i] == "user":
            turns.append([])
        turns[-1].append(i)

    dropped: set[int] = set()
    for turn in turns:  # oldest first
        if total <= budget:
            break
        total -= sum(sizes[i] for i in turn)
        dropped.update(turn)
    if total > budget:
        raise ContextWindowExceededError(
            f"the system prompt and the latest message need {total} tokens, but {spec.id} has a "
            f"{spec.context_window}-token window with {reserve_output} kept for the answer "
            f"({max(budget, 0)} left); shorten them or use a model with a larger window",
            provider=spec.provider,
            model=spec.name,
        )
    return [m for i, m in enumerate(messages) if i not in dropped]
