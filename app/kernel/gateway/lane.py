"""The pass-through lane: plain chat completions served in the transports' callbacks.

Most requests through the gateway are the plainest kind: a whole `POST /v1/chat/completions`
in one packet, from an app with a good token, for a model on an OpenAI-compatible server over
plain http. For those the general path's machinery (a parser callback per header, a request
object, a task, the await layers of guard, route, kernel, router and driver, the response
objects) costs more than the checks themselves: about +1 ms against a 50 ms upstream on the
reference machine, where the least any Python hop can add is about +0.3 ms (docs/gateway.md
§ How fast). The lane does the same work without that machinery:

- `offer()` reads the request from the packet, runs the guard's checks and the route's
  (Host, no Origin, the token and its `chat` scope, the budgets, the JSON body and
  `check_chat`), resolves the model with `plan_for`, and sends the renamed body on a kept-alive
  upstream connection; it declines, with no side effect at all, whenever the general path
  might behave differently (see `_Eligible`), and the request then goes to the parser as usual;
- the answer is read in the upstream connection's `data_received` and written back as it came;
- the router's, the socket's and the accounting's bookkeeping is the general path's: a slot
  (`Deployment.try_acquire`), the candidate order (`Router.open`), the generation an IMMEDIATE
  swap revokes, `RequestFinished` with the request's context current (audit, metrics, budgets);
- anything but a clean answer (an error status, a dropped connection, a timeout, a broken
  body, a swap) is handed to a task on the general path together with the router's `Opening`:
  the router takes the failure as the outcome of attempt 0 and retries or fails over from
  there, so nothing is sent twice and the client gets exactly what the general path gives.

The lane is on by default; `gateway.fast_lane = false` in the settings turns it off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import httptools
import orjson

from app.kernel import sse
from app.kernel.drivers import http1
from app.kernel.errors import ByenatosError, EmptyAnswerError, SwappedOutError
from app.kernel.gateway import personalize
from app.kernel.gateway.bodies import MAX_DEPTH_KEY, check_chat, parse_json
from app.kernel.gateway.errors import openai_stream_error
from app.kernel.gateway.keys import AUDIT_PROMPTS, KERNEL, LANE_OPENING
from app.kernel.gateway.middleware import host_name
from app.kernel.gateway.web import CIHeaders, Request
from app.kernel.monitor.accounting import RequestContext, current_request
from app.kernel.streams import (
    EMPTY_ANSWER,
    answer_has_output,
    looks_like_json,
    sse_has_output,
    sse_usage,
    stream_wire,
    usage_of,
)

if TYPE_CHECKING:
    from app.kernel.canonical import ModelSpec
    from app.kernel.gateway.http_server import Connection
    from app.kernel.gateway.middleware import Guard
    from app.kernel.gateway.web import Application
    from app.kernel.socket.router import Opening

log = logging.getLogger(__name__)

PATH = "/v1/chat/completions"
REQUEST_LINE = b"POST /v1/chat/completions HTTP/1.1\r\n"
RESPONSES_LINE = b"POST /v1/responses HTTP/1.1\r\n"  # served here too (gateway.responses_lane)
_UPSTREAM_PATH = "/chat/completions"
_HEAD_END = b"\r\n\r\n"
_TERMINATORS = sse.TERMINATORS
_USAGE_ONLY = sse.USAGE_ONLY
_DONE_EVENT = sse.DONE + b"\n\n"


# How long after its answer went out an answered call is settled (its upstream connection and
# slot given back, its connection on to the next request, its bookkeeping queued), unless
# something needs that sooner: the next request on any connection, or a reader of the
# accounting (Lane.settle). On 2 vCPUs the client just answered often runs on the core the
# gateway holds, so every µs the gateway spends after its write is a µs the client waits.
SETTLE_S = 0.001
# After an answer, when it was the only request its model was serving, the gateway gives up its
# core (sched_yield) before anything else: the client just answered, woken onto the same core,
# runs at once instead of after the gateway's remaining work. Measured paired on the 2-vCPU
# reference VM (docs/dev/pass-through-lane.md, Yielding): a 50 ms stream's added p50 -0.06 ms.
# Not when other calls are running: their answers must not wait behind whatever else is runnable.
_yield_core = getattr(os, "sched_yield", lambda: None)  # POSIX only
_MAX_HEADS = 256  # header blocks remembered (one or two per app in practice)
_VALUE_BYTES = bytes(range(0x20, 0x7F)) + b"\t"  # what a header value may hold here: visible ASCII, SP, HTAB


def read_fields(head: bytes) -> dict[bytes, bytes] | None:
    """The header lines of a request head as {lower-cased name: value}, or None unless every
    line is a plain `Name: value`: a name of letters, digits and dashes, a value of visible
    ASCII, spaces and tabs, each name once.

    Stricter than llhttp (the general path's parser) on purpose: whatever passes here llhttp
    reads the same way, and anything unusual (a repeated header, obs-fold, a bare line feed,
    control bytes, non-ASCII) goes to llhttp, which answers it as it always does. Done with
    bytes methods only, because a C parser's code is one more thing to fetch from memory
    after the process has been idle (docs/gateway.md § How fast)."""
    fields: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name.replace(b"-", b"").isalnum() or value.translate(None, _VALUE_BYTES):
            return None
        name = name.lower()
        if name in fields:
            return None
        fields[name] = value.strip(b" \t")
    return fields


class Lane:
    """Takes requests in `Connection.data_received` (see the module's docstring)."""

    def __init__(self, app: Application, guard: Guard) -> None:
        self.kernel = app[KERNEL]
        self.app = app
        self.hosts = guard.hosts
        self.max_body = app.client_max_size
        self.max_depth = app[MAX_DEPTH_KEY]
        self.audit_prompts = app[AUDIT_PROMPTS]
        self.clients: dict[Any, http1.Http1Client | None] = {}  # driver → the client the lane may use
        self.heads: dict[bytes, tuple[dict[bytes, bytes], str | None]] = {}  # see offer()
        self.served = 0  # requests answered in the lane
        self.handed_over = 0  # requests begun in the lane and finished on the general path
        # Calls waiting on their upstream, swept for read timeouts by one timer for them all
        # (a timer per request costs a timer's set-up and cancel, cold, on every request).
        self.waiting: dict[_Call, None] = {}
        self._sweep_at = 0.0  # when the sweep timer fires (0: not set)
        self.unsettled: list[_Call] = []  # answered, not settled yet (settle_later)
        self._settle_timer: asyncio.TimerHandle | None = None
        # A reader of the accounting settles the answered calls first: their bookkeeping is queued then.
        self.kernel.accounting.feeders.append(self.settle)
        # /v1/responses too, once its routes are added (they set this: gateway.responses_lane).
        self.responses: Any = None

    def close(self) -> None:
        """The server is closing: settle what was answered, and stop feeding the accounting."""
        self.settle()
        feeders = self.kernel.accounting.feeders
        if self.settle in feeders:
            feeders.remove(self.settle)

    # -- after the answers --------------------------------------------------------------------------
    def settle_later(self, call: _Call) -> None:
        """`call` answered its client: settle it SETTLE_S from now, or sooner if needed."""
        self.unsettled.append(call)
        if self._settle_timer is None:
            self._settle_timer = call.conn.loop.call_later(SETTLE_S, self._settle_due)

    def _settle_due(self) -> None:
        self._settle_timer = None
        self.settle()
        self.kernel.accounting.drain()  # and their bookkeeping: those answers went out a while ago

    def settle(self) -> None:
        """Settle every answered call now (an early drain leaves the timer set: it finds less to do)."""
        while self.unsettled:
            calls, self.unsettled = self.unsettled, []
            for call in calls:
                try:
                    call.settle()
                except Exception:  # one call's settling must not cost the others theirs
                    log.exception("settling a pass-through call failed")

    # -- read timeouts ----------------------------------------------------------------------------
    def watch(self, call: _Call, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self.waiting[call] = None
        if not self._sweep_at or deadline < self._sweep_at:
            self._sweep_at = deadline
            loop.call_at(deadline, self._sweep, deadline)

    def _sweep(self, due: float) -> None:
        if due != self._sweep_at:
            return  # an earlier sweep was set since; it set the next one
        self._sweep_at = 0.0
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for call in list(self.waiting):
            call.check_timeout(now)
        deadlines = [call.deadline() for call in self.waiting]
        if deadlines:
            self._sweep_at = max(min(deadlines), now + 0.001)
            loop.call_at(self._sweep_at, self._sweep, self._sweep_at)

    def _read_head(self, head: bytes, length: bytes) -> tuple[dict[bytes, bytes], str | None]:
        """The header lines of a lane-shaped request and its bearer token; token None if the
        lane must decline it (whatever the body)."""
        lowered = read_fields(head)
        if (
            lowered is None
            or b"transfer-encoding" in lowered
            or b"origin" in lowered
            or b"upgrade" in lowered
            or b"x-byenatos-priority" in lowered  # the general path checks it and schedules by it
            or b"x-byenatos-run" in lowered  # an external agent's run: the general path accounts it
            or lowered.get(b"content-length") != length  # once, and exactly as found
        ):
            return {}, None
        connection = lowered.get(b"connection")
        if connection is not None and connection.lower() != b"keep-alive":
            return {}, None
        host = lowered.get(b"host")
        if host is None or host_name(host.decode("latin-1")) not in self.hosts:
            return {}, None
        scheme, _, token = lowered.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return {}, None
        del lowered[b"content-length"]  # remembered for other lengths too: hand_over adds the right one
        return lowered, token

    def offer(self, conn: Connection, data: bytes) -> bool:
        """Serve the request in `data` if it is lane-shaped: True when taken (answered now, or
        later in callbacks, or handed to a task), False to leave it to the parser untouched."""
        if data.startswith(REQUEST_LINE):
            first = REQUEST_LINE
        elif self.responses is not None and data.startswith(RESPONSES_LINE):
            first = RESPONSES_LINE
        else:
            return False
        end = data.find(_HEAD_END)
        if end < 0:
            return False
        body = data[end + 4 :]
        if len(body) > self.max_body:
            return False
        # An app sends the same header lines request after request but for Content-Length, so
        # what they say is remembered by those lines: a dict lookup where reading them costs
        # ~350 bytecodes, tens of µs after idle. The Content-Length line must say exactly the
        # length of the rest of the packet (one whole request, nothing after it).
        block = data[len(first) - 2 : end + 2]  # CR LF, the header lines, each with its CR LF
        length = str(len(body)).encode()
        line = b"\r\nContent-Length: " + length + b"\r\n"
        at = block.find(line)
        if at < 0:
            line = line.lower()
            at = block.find(line)
            if at < 0:
                return False
        others = block[:at] + block[at + len(line) - 2 :]
        seen = self.heads.get(others)
        if seen is None:
            seen = self._read_head(block[2:-2], length)
            if len(self.heads) >= _MAX_HEADS:
                self.heads.clear()
            self.heads[others] = seen
        lowered, token = seen
        if token is None:
            return False
        kernel = self.kernel
        app = kernel.apps.authenticate(token)
        if app is None or not app.allows("chat"):
            return False  # refused: the general path says why
        limits = app.limits
        try:
            if limits.daily_token_budget is not None or limits.daily_cost_budget is not None:
                kernel.accounting.check(app, rate=False)  # budgets: a check without side effects
            request = parse_json(body, self.max_depth)
            turn = None
            if first is RESPONSES_LINE:  # translated to its chat body, or left to the general path
                turn = self.responses.prepare(request, app.id)
                if turn is None:
                    return False
                request = turn.chat
            model = check_chat(request)
        except ByenatosError:
            return False  # the general path answers with the error, in the caller's format
        if personalize.wants(kernel, app.id):
            return False
        try:
            plan = kernel.plan_for(model or "default")
        except ByenatosError:
            return False
        rated = limits.rate_limit_rpm is not None
        if rated:
            # The request's one take from the rate limit, the last check before the router: the
            # general path does not take again for a request handed over (request[LANE_OPENING]).
            try:
                kernel.accounting.limits.take(app)
            except ByenatosError:
                return False  # nothing taken: the general path refuses it with the 429
        # From here on the router's state changes: the request is served here or handed over.
        opening = kernel.router.open(plan)
        if opening is None:
            if rated:
                kernel.accounting.limits.refund(app.id)  # the general path takes it again
            return False  # nothing admissible (no side effects were made): the router says why
        if turn is not None:
            call: _Call = self.responses.call(self, conn, opening, app.id, model, request, body, lowered, turn)
        elif request.get("stream") is True:
            call = _StreamCall(self, conn, opening, app.id, model, request, body, lowered)
        else:
            call = _Call(self, conn, opening, app.id, model, request, body, lowered)
        conn.fast_began(call)
        call.send()
        return True


class _Reading:
    """What llhttp reads of the upstream's answer, through C callables only: the header
    lines, the body's pieces (chunked framing undone) and the message's begin and end."""

    __slots__ = ("begun", "done", "fields", "head", "on_body", "on_header", "on_headers_complete",
                 "on_message_begin", "on_message_complete", "parts")

    def __init__(self) -> None:
        self.fields: dict[bytes, bytes] = {}
        self.parts: list[bytes] = []
        self.head: list[bool] = []
        self.done: list[bool] = []
        self.begun: list[bool] = []
        self.on_header = self.fields.__setitem__
        self.on_body = self.parts.append
        self.on_headers_complete = functools.partial(self.head.append, True)
        self.on_message_complete = functools.partial(self.done.append, True)
        self.on_message_begin = functools.partial(self.begun.append, True)

    def lowered(self) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.fields.items()}

    def body(self) -> bytes:
        parts = self.parts
        piece = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        return piece


class _Call:
    """One request in the lane, from the send to the answer (or the hand-over)."""

    path = PATH  # the endpoint the client called (a hand-over serves it there)

    __slots__ = ("answer", "app_id", "client", "conn", "connecting", "driver", "ended", "fields", "lane",
                 "last_data", "model", "opening", "over", "parser", "raw", "reading", "request", "spec", "up")

    def __init__(self, lane: Lane, conn: Connection, opening: Opening, app_id: str, model: str,
                 request: dict[str, Any], raw: bytes, fields: dict[bytes, bytes]) -> None:
        self.lane, self.conn, self.opening, self.app_id, self.model = lane, conn, opening, app_id, model
        self.request, self.raw, self.fields = request, raw, fields  # fields: shared, never changed
        self.spec: ModelSpec = opening.dep.spec
        self.driver = opening.dep.driver
        self.client: http1.Http1Client | None = None
        self.up: http1.Http1Connection | None = None
        self.reading: _Reading  # made after the upstream write (_send_on): nothing reads it before
        self.parser: Any = None
        self.last_data = 0.0
        self.over = False  # answered, handed over or abandoned: nothing more to do here
        self.ended = 0.0  # when the answer went out (perf_counter), for its settling
        self.answer: Any = None  # a whole answer's JSON, once it went out
        self.connecting: asyncio.Task[None] | None = None  # held here: the loop keeps only weak refs

    # -- sending -------------------------------------------------------------------------------
    def send(self) -> None:
        driver = self.driver
        clients = self.lane.clients
        if driver in clients:
            client = clients[driver]
        else:
            passthrough = getattr(driver, "passthrough_client", None)
            client = passthrough() if passthrough is not None and not driver.manages_memory else None
            if len(clients) > 64:  # drivers rebuilt many times over: forget the old ones
                clients.clear()
            clients[driver] = client
        if client is None or not self.opening.acquired or (
                self.request.get("tools") and self.spec.capabilities.prompted_tools):
            # Another protocol, https, or a busy deployment (its queue is the general path's), or
            # tools for a model that gets them in its prompt (tools.prompted_stream, never raw):
            # the general path makes attempt 0, with the slot (if any) already held.
            self.hand_over(None)
            return
        self.client = client
        generation = self.opening.plan.generation
        up = client.take_idle()
        if up is None:  # the first request on a new connection: a task connects, then sends
            self.connecting = self.conn.loop.create_task(self._connect(client))
        else:
            self._send_on(up)
        if generation is not None:  # an IMMEDIATE swap revokes it (never before this returns)
            generation.track(self)

    async def _connect(self, client: http1.Http1Client) -> None:
        try:
            up = await client.connect()
        except http1.TransportError as e:
            if not self.over:
                self._failed(e)
            return
        if self.over:  # the client left, or a swap, while connecting: keep the connection
            client.put_back(up)
            return
        self._send_on(up)

    def _send_on(self, up: http1.Http1Connection) -> None:
        assert self.client is not None and up.transport is not None
        self.up = up
        up.listener = self
        body = orjson.dumps(self.wire())
        self.opening.started = time.perf_counter()
        up.transport.write(self.client.render("POST", _UPSTREAM_PATH, body))
        # The rest while the upstream works: every step before the write is added latency.
        self.reading = reading = _Reading()
        self.parser = httptools.HttpResponseParser(reading)
        loop = self.conn.loop
        self.last_data = now = loop.time()
        self.lane.watch(self, loop, now + self.client.read_timeout)

    def wire(self) -> dict[str, Any]:
        """The body the upstream gets."""
        return {**self.request, "model": self.spec.name}

    # -- the upstream's answer (the http1 connection's callbacks) --------------------------
    def upstream_data(self, data: bytes) -> None:
        self.last_data = self.conn.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:  # an upgrade too: nothing this lane speaks
            self._failed(http1.TransportError("dropped", f"broken answer from the server: {e}"))
            return
        self._progress()

    def _progress(self) -> None:
        if self.reading.done:
            self._answered()

    def upstream_closed(self) -> None:
        up, reading = self.up, self.reading
        assert up is not None
        if reading.head and not reading.done and self._close_delimited():
            reading.done.append(True)  # the close ends the body
            self._progress()
            return
        if not up.received:
            # The server closed the kept-alive connection as it was reused: it never saw the
            # request. The general path sends it on a fresh connection (as http1 does itself).
            self._detach()
            self.hand_over(None)
            return
        self._failed(http1.TransportError("dropped", "connection closed by the server"))

    def _close_delimited(self) -> bool:
        status = self.parser.get_status_code()
        names = {k.lower() for k in self.reading.fields}
        return (b"content-length" not in names and b"transfer-encoding" not in names
                and status >= 200 and status not in (204, 304))

    def _reusable(self) -> bool:
        """May the upstream connection serve another request (one whole answer read, nothing
        after it, framed, and the server keeps it open)?"""
        up = self.up
        if (up is None or up.closed or up.buffer or len(self.reading.begun) != 1
                or self.parser.get_http_version() != "1.1"):
            return False
        fields = self.reading.lowered()
        if fields.get("connection", "").strip().lower() == "close":
            return False
        return "content-length" in fields or "transfer-encoding" in fields or self.parser.get_status_code() in (204, 304)

    def _release_upstream(self) -> None:
        """The answer was read to its end: its connection back to the pool, or closed."""
        up, client = self.up, self.client
        reusable = self._reusable()
        self._detach(keep=reusable)
        if reusable and up is not None and client is not None:
            client.put_back(up)

    def deadline(self) -> float:
        """When the answer is late if no more of it comes."""
        assert self.client is not None
        return self.last_data + self.client.read_timeout

    def check_timeout(self, now: float) -> None:
        """The lane's sweep: fail the call if its upstream has been silent for the read timeout."""
        if self.up is None or self.client is None or self.over:
            self.lane.waiting.pop(self, None)
            return
        if self.paused():  # not reading while the client is not: no answer is late
            self.last_data = now
        if now >= self.deadline():
            self._failed(http1.TransportError("read", "timed out waiting for the answer"))

    # -- the client's side ------------------------------------------------------------------------
    def paused(self) -> bool:
        return False

    def pause(self) -> None:
        """The client is not reading (its socket buffer is full)."""

    def resume(self) -> None:
        """The client reads again."""

    # -- endings ---------------------------------------------------------------------------------
    def _answered(self) -> None:
        parts = self.reading.parts  # reading.body(), inlined: this is on the way to the client
        raw = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        status = self.parser.get_status_code()
        try:
            # The headers are looked at only for an error (its Retry-After).
            data = self.driver.passthrough_answer(status, self.reading.lowered() if status >= 400 else {}, raw,
                                                  self.spec.name)
        except ByenatosError as e:
            self._release_upstream()
            self.hand_over(e)
            return
        self.conn.fast_answer(raw)
        self.lane.served += 1
        self.answer = data  # its usage is read with the rest of the bookkeeping
        self._answered_now()

    def _answered_now(self) -> None:
        """The client has its whole answer: the rest waits until it has read it (Lane.settle).
        Until then nothing else may act on the call (`over`), nor read its upstream connection."""
        self.ended = time.perf_counter()
        dep = self.opening.dep
        if dep.in_flight == 1 and not dep.waiting:
            _yield_core()
        self.over = True
        self.up.listener = None  # type: ignore[union-attr]  # what else arrives stays in its buffer
        generation = self.opening.plan.generation
        if generation is not None:  # no longer running: a swap now neither waits for it nor counts it
            generation.untrack(self)
        self.lane.settle_later(self)

    def settle(self) -> None:
        """After the answer (Lane.settle): the upstream connection and the slot back, the client's
        connection on to its next request, the router's, the socket's and the accounting's
        bookkeeping queued."""
        self._release_upstream()
        opening = self.opening
        opening.taken = True
        dep = opening.dep
        dep.release()
        dep.trial_running = False
        self.conn.fast_ended(self)
        self.lane.kernel.accounting.after_answer(self._answer_recorded, self.ended, self.answer)

    def _answer_recorded(self, ended: float, answer: Any) -> None:
        """The bookkeeping of an answered request (Accounting.after_answer)."""
        self.lane.kernel.router.record_success(self.opening.dep, (ended - self.opening.started) * 1000)
        usage = answer.get("usage") if isinstance(answer, dict) else None
        self._account(usage_of(usage), "ok" if answer_has_output(answer) else EMPTY_ANSWER, ended=ended)

    def _failed(self, error: BaseException) -> None:
        from app.kernel.drivers.openai_compat import pass_through_error

        self._detach()
        self.hand_over(pass_through_error(error, provider=self.spec.provider, model=self.spec.name))

    def revoke(self, reason: str) -> None:
        """An IMMEDIATE swap of the plan's generation: stop the upstream request now."""
        if self.over:
            return
        self._detach()
        self.hand_over(SwappedOutError(reason, provider=self.spec.provider, model=self.spec.name))

    def client_gone(self) -> None:
        """The client hung up: stop the upstream request and give back the slot."""
        if self.over:
            return
        self._detach()
        self.opening.abandon()
        self._account(None, "cancelled")

    def hand_over(self, failed: ByenatosError | None) -> None:
        """Finish on the general path: a task runs the route with the router's opening, whose
        attempt 0 ended with `failed` (None: not made yet)."""
        self.over = True
        self.opening.failed = failed
        conn = self.conn
        headers = CIHeaders({k.decode("latin-1"): v.decode("latin-1") for k, v in self.fields.items()})
        headers["content-length"] = str(len(self.raw))
        request = Request(conn, conn.app, "POST", self.path.encode(), headers, "1.1", True)
        request.body += self.raw
        request.body_complete = True
        request[LANE_OPENING] = self.opening
        self.lane.handed_over += 1
        conn.fast_hand_over(self, request, self.opening.abandon)

    def _detach(self, *, keep: bool = False) -> None:
        """Stop listening to the upstream connection; close it unless `keep` (its response
        put it back in the pool, or closed it, when the body was read to its end)."""
        self.over = True
        self.lane.waiting.pop(self, None)
        generation = self.opening.plan.generation
        if generation is not None:
            generation.untrack(self)
        up, self.up = self.up, None
        if up is not None:
            up.listener = None
            if not keep:
                up.close()

    def _account(self, usage: Any, outcome: str, *, stream: bool = False, ended: float | None = None) -> None:
        """RequestFinished, with this request's context current: its audit row, metrics and
        budget charge are the general path's. `ended`: when the answer ended, if earlier."""
        # after_answer=False: this runs after the answer already (Accounting.after_answer)
        # where it is on the hot path, so the accounting's handling need not wait again.
        ctx = RequestContext(app=self.app_id, endpoint=self.path, model=self.model, stream=stream,
                             after_answer=ended is None)
        if self.lane.audit_prompts:
            ctx.prompt = orjson.dumps(self.request["messages"]).decode()
        reset = current_request.set(ctx)
        try:
            self.lane.kernel.record_finished(self.spec, self.app_id, stream, self.opening.started, usage, outcome, ended)
        finally:
            current_request.reset(reset)


class _StreamCall(_Call):
    """A streamed chat completion in the lane: the upstream's SSE relayed by whole events.

    What the general path does (Router.stream, ObservedStream, openai_routes.relay_sse), in
    callbacks: until the first batch of events the request can still be handed over (a retry
    or a fallback may serve it); the first batch is the router's success; the client's
    `[DONE]` ends its answer and records it, and the upstream's tail is then read for at most
    sse.TAIL_TIMEOUT_S before its connection is closed; an error after the first batch is an
    `error` event; the usage chunk the client did not ask for is asked for and kept from it.
    """

    __slots__ = ("buffer", "drop_usage", "last", "output", "started", "tail", "tail_timer", "usage",
                 "wants_usage", "was_paused")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        options = self.request.get("stream_options")
        self.wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.drop_usage = not self.wants_usage
        self.buffer = b""
        self.usage: Any = None
        self.started = False  # the first batch went to the client: no hand-over after this
        self.tail = False  # [DONE] went out: the client's answer is over, the upstream's not yet
        self.tail_timer: Any = None
        self.was_paused = False
        self.last = b""  # the last batch, read for its usage when the call is settled
        self.output = False  # a batch with output (text, a tool call) went out before the last one

    def wire(self) -> dict[str, Any]:
        return stream_wire(self.spec.name, self.driver, self.request, meter=not self.wants_usage)

    def _progress(self) -> None:
        reading = self.reading
        if not reading.head:
            return
        if self.parser.get_status_code() >= 400:  # an error answer: read whole, handed over like a plain one
            if reading.done:
                self._answered()
            return
        if self.tail:
            reading.parts.clear()
            if reading.done:
                self._tail_done()
            return
        parts = reading.parts
        if parts:
            # reading.body() and sse.complete_prefix, inlined: this runs before every relayed
            # batch, the first event's included, and each call costs after idle.
            piece = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            buffer = self.buffer + piece if self.buffer else piece
            end = len(buffer) if buffer.endswith(_TERMINATORS) else sse.complete_prefix(buffer)
            if end:
                self.buffer = buffer[end:]
                self._relay(buffer if end == len(buffer) else buffer[:end])
            else:
                self.buffer = buffer
        if reading.done and not self.over:
            if self.tail:
                self._tail_done()
            else:
                self._body_ended()

    def _relay(self, batch: bytes) -> None:
        """One batch of whole events to the client (the first one with the head)."""
        relayed = batch
        if self.drop_usage and (_USAGE_ONLY[0] in batch or _USAGE_ONLY[1] in batch):
            relayed = sse.drop_events_with(batch, _USAGE_ONLY)
        # sse.ends_with_done, inlined (see _progress), the usual ending tested first
        self._relayed(batch, relayed, relayed.endswith(_DONE_EVENT) or relayed.rstrip().endswith(sse.DONE))

    def _relayed(self, batch: bytes, relayed: bytes, done: bool) -> None:
        """`relayed` (what the client gets for `batch`) out, then the bookkeeping; `done`: its end."""
        self.conn.fast_stream(relayed, end=done)
        if done and self.reading.done and not self.was_paused:  # the whole answer in: the usual end
            self.tail = True
            self.last = batch
            if not self.started:
                self.lane.served += 1
            self._answered_now()
            return
        # After the write, so the client does not wait for them: the router's bookkeeping, and
        # the usage counts (parsing the usage chunk is ~10 µs warm, many times that after idle).
        if not self.started:
            self._first_batch()
        if done:
            self._client_done("ok", batch)  # its usage is read later, with the rest of the bookkeeping
            self._begin_tail()
            return
        usage = sse_usage(batch)
        if usage is not None:
            self.usage = usage
        if not self.output:  # one C search per batch until the first output (the stream's first batches)
            self.output = sse_has_output(batch)

    def settle(self) -> None:
        """After a stream whose [DONE] came with the end of the upstream's body (Lane.settle)."""
        if not self.started:
            self._first_batch(self.ended, count=False)
        self._client_done("ok", self.last, ended=self.ended)
        self._tail_done()

    def _first_batch(self, at: float | None = None, *, count: bool = True) -> None:
        self.started = True
        opening = self.opening
        opening.taken = True  # from here the stream is the lane's to finish
        opening.dep.trial_running = False
        if count:
            self.lane.served += 1
        self.lane.kernel.accounting.after_answer(self._first_recorded, at or time.perf_counter())

    def _first_recorded(self, at: float) -> None:
        """The first batch as the router's success (Accounting.after_answer)."""
        self.lane.kernel.router.record_success(self.opening.dep, (at - self.opening.started) * 1000)

    def _body_ended(self) -> None:
        """The upstream's body ended without [DONE]: what is left goes out, then the end. Before
        any event went out, two rarer answers: a whole JSON answer (the server ignored `stream`)
        is served as the stream asked for, one chunk holding all of it; an empty body is a
        failed attempt (EmptyAnswerError), handed over like an error status."""
        rest, self.buffer = self.buffer, b""
        if not self.started and looks_like_json(rest):
            try:
                batch = self.driver.passthrough_stream_answer(rest, self.wire())
            except ByenatosError as e:  # invalid JSON, or an error object in the 200
                self._release_upstream()
                self.hand_over(e)
                return
            self._relay(batch)  # with [DONE] and the end of the upstream's body: answered
            return
        if rest.strip():
            self._relay(rest)  # a last event without its blank line: passed on, not lost
            if self.tail:
                return  # it ended with [DONE]: the tail (none left) is settled already
        if not self.started:  # not one event: nothing was served
            self._release_upstream()
            self.hand_over(EmptyAnswerError("the model's stream ended before its first event",
                                            provider=self.spec.provider, model=self.spec.name))
            return
        self.conn.fast_stream(b"", end=True)
        self._client_done("ok")
        self._release_upstream()
        self.opening.dep.release()

    def _client_done(self, outcome: str, last: bytes = b"", *, ended: float | None = None) -> None:
        """The client's answer is over: its connection goes on, and it is recorded (with the
        usage in `last`, the last batch, if any) after it."""
        generation = self.opening.plan.generation
        if generation is not None:
            generation.untrack(self)
        self.conn.fast_ended(self)
        self.lane.kernel.accounting.after_answer(self._stream_recorded, ended or time.perf_counter(), outcome, last)

    def _stream_recorded(self, ended: float, outcome: str, last: bytes) -> None:
        """The stream's audit row, metrics and budget charge (Accounting.after_answer)."""
        usage = sse_usage(last) if last else None
        if usage is not None:
            self.usage = usage
        if outcome == "ok" and not (self.output or (self.usage is not None and self.usage.completion_tokens > 0)
                                    or (last and sse_has_output(last))):
            outcome = EMPTY_ANSWER  # events, but nothing in them: never recorded as ok
        self._account(self.usage, outcome, stream=True, ended=ended)

    def _begin_tail(self) -> None:
        self.tail = True
        self.lane.waiting.pop(self, None)
        if self.was_paused and self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()  # the tail is read whatever the client does
        if self.reading.done:
            self._tail_done()
        else:
            self.tail_timer = self.conn.loop.call_later(sse.TAIL_TIMEOUT_S, self._tail_expired)

    def _tail_expired(self) -> None:
        """A server that never ends its body after [DONE]: its connection is closed."""
        self.tail_timer = None
        if not self.over:
            self._detach()
            self.opening.dep.release()

    def _tail_done(self) -> None:
        if self.tail_timer is not None:
            self.tail_timer.cancel()
            self.tail_timer = None
        self._release_upstream()
        self.opening.dep.release()

    # -- failures --------------------------------------------------------------------------------
    def _failed(self, error: BaseException) -> None:
        if not self.started:
            super()._failed(error)  # before the first event: the router retries or fails over
            return
        if self.tail:
            self._tail_expired()
            return
        from app.kernel.drivers.openai_compat import pass_through_error

        self._error_event(pass_through_error(error, provider=self.spec.provider, model=self.spec.name), count=True)

    def revoke(self, reason: str) -> None:
        if self.over or self.tail:
            return
        if not self.started:
            super().revoke(reason)
            return
        self._error_event(SwappedOutError(reason, provider=self.spec.provider, model=self.spec.name), count=False)

    def _error_event(self, error: ByenatosError, *, count: bool) -> None:
        """After the first event: the error as an `error` event, then the end of the stream."""
        self._detach()
        dep = self.opening.dep
        if count:  # as RoutedStream counts a deployment's failure mid-stream
            dep.errors += 1
            dep.last_error = str(error)
        self.conn.fast_stream(self._error_bytes(error), end=True)
        self._client_done(error.code)
        dep.release()

    def _error_bytes(self, error: ByenatosError) -> bytes:
        return openai_stream_error(error)

    def client_gone(self) -> None:
        if self.over or self.tail:
            return
        if not self.started:
            super().client_gone()
            return
        self._detach()
        self.opening.dep.release()
        self._account(self.usage, "cancelled", stream=True)

    # -- flow control ------------------------------------------------------------------------------
    def paused(self) -> bool:
        return self.was_paused

    def pause(self) -> None:
        if not self.tail and self.up is not None and self.up.transport is not None:
            self.was_paused = True
            self.up.transport.pause_reading()

    def resume(self) -> None:
        if self.was_paused:
            self.was_paused = False
            if self.up is not None and self.up.transport is not None:
                self.up.transport.resume_reading()
