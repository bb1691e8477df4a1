"""Conversations: sessions the kernel continues on whatever model is in their socket.

A session keeps its history in SQLite. Each turn takes the socket's current model (or, after
a SESSION_AWARE swap, the model the session started on), trims the history to that model's
window by a real token count, routes the request, and stores the answer with the model that
gave it — so a conversation carries on across a swap, and the history shows where it did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from app.kernel.canonical import ChatChunk, ChatMessage, ChatRequest, ChatResponse, ModelSpec
from app.kernel.socket.sessions import Session, SessionStore, trim_to_window

if TYPE_CHECKING:
    from peewee import SqliteDatabase

    from app.kernel.socket.manager import Generation, SocketManager
    from app.kernel.socket.router import RoutePlan
    from app.kernel.streams import ObservedStream

DEFAULT_RESERVE = 1024  # tokens left for the answer when the caller sets no max_tokens


class PlanFor(Protocol):
    def __call__(self, name: str, *, pinned: Generation | None = None) -> RoutePlan: ...


class ChatRouted(Protocol):
    def __call__(self, request: ChatRequest, *, app: str | None = None, pinned: Generation | None = None
                 ) -> Awaitable[tuple[ChatResponse, ModelSpec]]: ...


class OpenStream(Protocol):
    def __call__(self, request: ChatRequest, *, app: str | None = None, pinned: Generation | None = None
                 ) -> Awaitable[ObservedStream[ChatChunk]]: ...


class Conversations:
    """Sessions over the socket. It is handed the kernel's routing as three callables (how a
    name is planned, a routed answer, a routed stream) rather than the kernel itself, so this
    module does not depend on the one that builds it."""

    def __init__(self, db: SqliteDatabase, socket: SocketManager, *, plan_for: PlanFor,
                 chat_routed: ChatRouted, stream: OpenStream) -> None:
        self.socket = socket
        self._plan_for, self._chat_routed, self._stream = plan_for, chat_routed, stream
        self.store = SessionStore(db)
        self._pins: dict[str, Generation] = {}  # session id → generation (SESSION_AWARE)

    def create(self, alias: str = "default", *, app: str | None = None, system: str | None = None,
               metadata: dict[str, Any] | None = None) -> Session:
        self.socket.generation(alias)  # an unknown alias fails before anything is stored
        session = self.store.create(alias, app, system, metadata)
        self._pins[session.id] = self.socket.pin_session(alias)
        return session

    def close(self, session_id: str) -> Session:
        session = self.store.close(session_id)
        pin = self._pins.pop(session_id, None)
        if pin is not None:
            self.socket.unpin_session(session.alias, pin)
        return session

    def update_context(self, session_id: str, *, system: str | None = None,
                       metadata: dict[str, Any] | None = None,
                       messages: list[dict[str, Any]] | None = None) -> Session:
        """Change what the next turns see without a turn of their own: the system prompt, the
        metadata, and messages added to the history (notes, tool results) that nobody answers."""
        session = self.store.update(session_id, system=system, metadata=metadata)  # refused if closed
        for message in messages or ():
            self.store.append(session_id, message)
        return self.store.get(session.id) if messages else session

    def _prepare(self, session_id: str, message: str | dict[str, Any], options: dict[str, Any]
                 ) -> tuple[Session, ChatRequest, Generation | None]:
        session = self.store.get(session_id)
        turn = {"role": "user", "content": message} if isinstance(message, str) else message
        self.store.append(session_id, turn)  # durable before anything is sent
        pin = self._pins.get(session_id)
        spec = self._plan_for(session.alias, pinned=pin).primary
        reserve = options.get("max_tokens") or min(DEFAULT_RESERVE, spec.context_window // 4)
        history = trim_to_window(self.store.history(session_id), spec, reserve_output=reserve)
        request = ChatRequest(model=session.alias, messages=[ChatMessage.model_validate(m) for m in history],
                              **options)
        return session, request, pin

    async def say(self, session_id: str, message: str | dict[str, Any], **options: Any
                  ) -> tuple[ChatResponse, ModelSpec]:
        """One turn, answered in full: the answer and the model that gave it."""
        session, request, pin = self._prepare(session_id, message, options)
        answer, spec = await self._chat_routed(request, app=session.app, pinned=pin)
        self.store.append(session_id, answer.message.model_dump(exclude_none=True), model=spec.id)
        return answer, spec

    async def say_streaming(self, session_id: str, message: str | dict[str, Any], **options: Any
                            ) -> AsyncIterator[ChatChunk]:
        """One turn, streamed; the full answer is stored when the stream ends normally."""
        session, request, pin = self._prepare(session_id, message, {**options, "stream": True})
        chunks = await self._stream(request, app=session.app, pinned=pin)
        return self._record(session_id, chunks)

    async def _record(self, session_id: str, chunks: Any) -> AsyncIterator[ChatChunk]:
        parts: list[str] = []
        try:
            async for chunk in chunks:
                parts.append(chunk.text())
                yield chunk
        finally:
            await chunks.aclose()
        self.store.append(session_id, {"role": "assistant", "content": "".join(parts)}, model=chunks.served_by.id)
