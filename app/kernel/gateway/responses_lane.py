"""`POST /v1/responses` in the pass-through lane (gateway.lane): translated dict to dict.

A Responses request the lane can take (no PSP for its app, `truncation` not `auto`, a plain OpenAI-compatible upstream over http: everything the lane itself asks of a
chat request) is translated to its chat body (`responses.translate`, the chain's history read
from the store), sent on the lane's kept-alive upstream connection, and the upstream's chat
JSON turned into the response object with dict operations (`responses.from_chat`). Serialized
once: those bytes are both what the store keeps and what the client gets. A stream's chat
events are turned into the Responses events batch by batch (`responses.ResponseStream`) as the
lane's chat streams relay theirs.

Durable before the answer: with `store` the response is queued to the store's writer thread
(group commit) and the client's answer (for a stream, `response.completed`) is written only in
the commit's callback. Anything the
lane would hand over (an error status, a dropped connection, a swap…), and a failed commit,
goes to the general path's route (`responses_routes.create`) with the router's opening, as a
chat request does: nothing had reached the client.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from app.kernel import responses
from app.kernel.errors import ByenatosError
from app.kernel.gateway.lane import _Call, _StreamCall
from app.kernel.streams import looks_like_json

if TYPE_CHECKING:
    from app.kernel.gateway.http_server import Connection
    from app.kernel.gateway.lane import Lane
    from app.kernel.socket.router import Opening

PATH = "/v1/responses"


class _Prepared:
    """A Responses request translated: its chat body and what the answer needs."""

    __slots__ = ("chat", "keep", "previous", "turn")

    def __init__(self, turn: responses.Turn, previous: str | None, keep: bool) -> None:
        self.turn, self.previous, self.keep = turn, previous, keep
        self.chat = turn.chat


class ResponsesLane:
    """What the lane asks of the Responses API: `prepare` a body, make its `call`."""

    def __init__(self, store: responses.ResponseStore) -> None:
        self.store = store

    def prepare(self, body: Any, app_id: str) -> _Prepared | None:
        """The translated request, or None to leave it to the general path (which answers any
        refusal: the typed errors raised here are ByenatosErrors, and the lane declines on them)."""
        if type(body) is not dict:
            return None
        previous, keep, stream = responses.head(body)
        history = self.store.context(previous, app=app_id) if previous else []
        turn = responses.translate(body, history)
        if turn.echo["truncation"] == "auto":  # fitted to the model's window: the general path does it
            return None
        if stream:
            turn.chat["stream"] = True
        return _Prepared(turn, previous, keep)

    def call(self, lane: Lane, conn: Connection, opening: Opening, app_id: str, model: str,
             request: dict[str, Any], raw: bytes, fields: dict[bytes, bytes], prepared: _Prepared) -> _Call:
        kind = _ResponsesStreamCall if request.get("stream") is True else _ResponsesCall
        return kind(lane, conn, opening, app_id, model, request, raw, fields, prepared, self.store)


class _ResponsesCall(_Call):
    """A whole (not streamed) response: the upstream's chat answer as a response object."""

    __slots__ = ("prepared", "store")
    path = PATH

    def __init__(self, lane: Lane, conn: Connection, opening: Opening, app_id: str, model: str,
                 request: dict[str, Any], raw: bytes, fields: dict[bytes, bytes], prepared: _Prepared,
                 store: responses.ResponseStore) -> None:
        super().__init__(lane, conn, opening, app_id, model, request, raw, fields)
        self.prepared, self.store = prepared, store

    def _answered(self) -> None:
        parts = self.reading.parts
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        status = self.parser.get_status_code()
        try:
            data = self.driver.passthrough_answer(status, self.reading.lowered() if status >= 400 else {}, raw,
                                                  self.spec.name)
        except ByenatosError as e:
            self._release_upstream()
            self.hand_over(e)
            return
        p = self.prepared
        shell = responses.shell(responses.new_response_id(), self.request["model"], p.turn.echo,
                                previous=p.previous, store=p.keep)
        done = responses.from_chat(data, shell)
        body = orjson.dumps(done.response)
        if not p.keep:
            self._send(body, data)
            return
        # Saving: nothing else may act on the call (a swap, the client leaving, more bytes from
        # the upstream) until the commit's callback answers the client.
        self.over = True
        if self.up is not None:
            self.up.listener = None
        saved = self.store.submit(done.response, app=self.app_id, model=str(data.get("model") or self.request["model"]),
                                  items=p.turn.items, messages=[*p.turn.messages, done.message], body=body)
        saved.add_done_callback(lambda f: self._saved(f, body, data))

    def _saved(self, saved: asyncio.Future[None], body: bytes, data: dict[str, Any]) -> None:
        if saved.cancelled() or saved.exception() is not None:
            # Not durable, so not sent: the general path serves the request again and answers
            # whatever its own save says (the upstream's answer was read whole: its connection is reusable).
            self._release_upstream()
            self.hand_over(None)
            return
        self._send(body, data)

    def _send(self, body: bytes, data: dict[str, Any]) -> None:
        self.conn.fast_answer(body)
        self.lane.served += 1
        self.answer = data  # its usage is read with the rest of the bookkeeping
        self._answered_now()


class _ResponsesStreamCall(_StreamCall):
    """A streamed response: each batch of the upstream's chat events as the Responses events.

    The chat stream's end ([DONE]) closes the response's items; with `store` the response is
    committed first and `response.completed` written in the commit's callback, and meanwhile
    (`saving`) the call is `over` for everything else (a swap, the client leaving, the
    upstream's tail), as a whole answer's call is while it is written."""

    __slots__ = ("encoder", "opened", "prepared", "saving", "store")
    path = PATH

    def __init__(self, lane: Lane, conn: Connection, opening: Opening, app_id: str, model: str,
                 request: dict[str, Any], raw: bytes, fields: dict[bytes, bytes], prepared: _Prepared,
                 store: responses.ResponseStore) -> None:
        super().__init__(lane, conn, opening, app_id, model, request, raw, fields)
        self.prepared, self.store = prepared, store
        self.encoder = responses.ResponseStream(responses.shell(
            responses.new_response_id(), request["model"], prepared.turn.echo, previous=prepared.previous,
            store=prepared.keep))
        self.opened = False  # response.created went out
        self.saving = False

    def _relay(self, batch: bytes) -> None:
        encoder = self.encoder
        out = b""
        if not self.opened:
            self.opened = True
            out = encoder.start()
        try:
            out += encoder.feed(batch)
        except ByenatosError as e:  # the backend's error event: the response fails
            if out:
                self.conn.fast_stream(out, end=False)
            self._error_event(e, count=True)
            return
        if not encoder.done:
            self._relayed(batch, out, False)
            return
        tail, message = encoder.finish()
        out += tail
        if not self.prepared.keep:
            self._relayed(batch, out + encoder.completed(), True)
            return
        self.conn.fast_stream(out, end=False)
        self.saving = self.over = True
        turn = self.prepared.turn
        saved = self.store.submit(encoder.response, app=self.app_id, model=self.spec.id,
                                  items=turn.items, messages=[*turn.messages, message])
        saved.add_done_callback(lambda f: self._saved(f, batch))

    def _saved(self, saved: asyncio.Future[None], batch: bytes) -> None:
        self.saving = self.over = False
        if saved.cancelled() or saved.exception() is not None:
            error = saved.exception() if not saved.cancelled() else None
            end = self.encoder.failed("server_error", f"the response could not be stored: {error}")
        else:
            end = self.encoder.completed()
        self._relayed(batch, end, True)

    def _progress(self) -> None:
        if not self.saving:  # the upstream's tail is read once the response is out
            super()._progress()

    def _body_ended(self) -> None:
        """The upstream's body ended without [DONE]: the response ends as if it had come (as
        on the general path); a whole JSON answer, or nothing at all, as the chat call does."""
        rest = self.buffer
        if not self.started and not self.opened and (looks_like_json(rest) or not rest.strip()):
            super()._body_ended()
            return
        self.buffer = b""
        self._relay(rest.rstrip(b"\r\n") + b"\n\ndata: [DONE]\n\n" if rest.strip() else b"data: [DONE]\n\n")

    def _failed(self, error: BaseException) -> None:
        if not self.saving:
            super()._failed(error)

    def _error_bytes(self, error: ByenatosError) -> bytes:
        start = b"" if self.opened else self.encoder.start()
        self.opened = True
        return start + self.encoder.failed(error.code, str(error))
