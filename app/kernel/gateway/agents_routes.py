"""/api/agents: the agent kernel's processes over HTTP (spawn, list, get, suspend, resume, kill,
message, quotas, logs, and a live event stream of one agent).

Every route needs the `admin` scope (`middleware.required_scope`): an agent acts with the user's
tools and, for some, the user's whole memory, and its log shows what it read. Spawning takes a
shipped agent by name, or the *text* of an agent file (`spec`); never a path, so a caller cannot
make the daemon read a file it names.

The handlers only check the shape of what they are given; the rules (the state machine, quota
values, tools) are the runtime's (`app.kernel.agents.runtime.AgentRuntime`), and its typed errors
become the API's errors in the guard: 404 unknown pid, 409 an illegal transition, 400 bad input.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import orjson

from app.kernel.agents.events import AgentLogged, AgentStateChanged
from app.kernel.agents.process import Priority, ProcessState, Quotas
from app.kernel.agents.runtime import MAX_MESSAGE, MAX_TASK
from app.kernel.errors import NotFoundError
from app.kernel.gateway import web
from app.kernel.gateway.bodies import read_json
from app.kernel.gateway.errors import RequestError
from app.kernel.gateway.keys import KERNEL, SSE_HEADERS

if TYPE_CHECKING:
    from app.kernel.agents.process import AgentProcess
    from app.kernel.agents.runtime import AgentRuntime
    from app.kernel.agents.spec import AgentSpec

MAX_PID = 2**63 - 1  # SQLite's INTEGER: no pid is larger (and a larger one would not fit the query)
MAX_QUOTA = 2**53  # the largest whole number every JSON reader keeps exact
MAX_SPEC = 200_000  # characters of an agent file sent as text
MAX_LIST = 1_000
MAX_LOGS = 1_000
SPEC_FORMATS = ("toml", "yaml")
SPAWN_FIELDS = ("agent", "spec", "spec_format", "task", "quotas", "priority")
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies and clients from timing out
STATES = tuple(s.value for s in ProcessState)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _runtime(request: web.Request) -> AgentRuntime:
    return request.app[KERNEL].agents


def _pid(request: web.Request) -> int:
    raw = request.match_info["pid"]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PID:
        raise NotFoundError(f"no agent with pid {raw!r} (pids are whole numbers from 1)")
    return int(raw)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(f"{name}: a whole number from {low} to {high}, not {raw!r}", param=name) from None
    if not low <= value <= high:
        raise RequestError(f"{name}: a whole number from {low} to {high}", param=name)
    return value


def _unknown_fields(body: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RequestError(f"{unknown[0]}: not a field of this request (fields: {', '.join(known)})",
                           param=unknown[0])


def check_quotas(value: Any, param: str = "quotas") -> dict[str, Any]:
    """A quota object as the API takes it: known names, each a number above 0 (null: no limit)."""
    if not isinstance(value, dict):
        raise RequestError(f'{param}: an object of limits, e.g. {{"steps": 100}}', param=param)
    names = Quotas.__dataclass_fields__
    for key, limit in value.items():
        where = f"{param}.{key}"
        if key not in names:
            raise RequestError(f"{where}: not a quota; quotas are {', '.join(names)}", param=where)
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit):
            raise RequestError(f"{where}: a number, or null for no limit", param=where)
        if not 0 < limit <= MAX_QUOTA:
            raise RequestError(f"{where}: must be greater than 0 and at most {MAX_QUOTA} "
                               "(null for no limit)", param=where)
    return value


def _spec_of(body: dict[str, Any]) -> AgentSpec:
    from app.kernel.agents.spec import builtin_agents, parse_agent

    agent, text, fmt = body.get("agent"), body.get("spec"), body.get("spec_format", "toml")
    if ("agent" in body) == ("spec" in body):
        raise RequestError("give either `agent` (the name of a shipped agent) or `spec` (the text of an "
                           "agent file), not both and not neither", param="agent")
    if "spec" in body:
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_SPEC:
            raise RequestError(f"spec: the text of an agent file (TOML or YAML), at most {MAX_SPEC} characters",
                               param="spec")
        if fmt not in SPEC_FORMATS:
            raise RequestError(f"spec_format: one of {', '.join(SPEC_FORMATS)}", param="spec_format")
        spec = parse_agent(text, fmt=fmt, origin="spec")
        check_quotas(spec.limits, "spec: limits")  # the same bounds as quotas sent in the request
        return spec
    if "spec_format" in body:
        raise RequestError("spec_format: only with `spec`", param="spec_format")
    shipped = builtin_agents()
    if not isinstance(agent, str) or agent not in shipped:
        shown = repr(agent) if isinstance(agent, str) else "a string"
        raise RequestError(f"agent: no shipped agent named {shown}; shipped agents: "
                           f"{', '.join(sorted(shipped)) or 'none'} (or send an agent file's text in `spec`)",
                           param="agent")
    return shipped[agent]


def process_json(proc: AgentProcess, *, spec: bool = False) -> dict[str, Any]:
    data = proc.to_dict()
    if spec:
        data["spec"] = proc.spec
    return data


# -- the routes ---------------------------------------------------------------------------------
async def spawn(request: web.Request) -> web.Response:
    """Start a kernel-run agent: a shipped one by name, or one from an agent file's text."""
    body = await read_json(request)
    _unknown_fields(body, SPAWN_FIELDS)
    spec = _spec_of(body)
    task = body.get("task", "")
    if not isinstance(task, str) or len(task) > MAX_TASK:
        raise RequestError(f"task: a string of at most {MAX_TASK} characters", param="task")
    quotas = check_quotas(body["quotas"]) if body.get("quotas") is not None else None
    priority = body.get("priority")
    if priority is not None and priority not in tuple(p.value for p in Priority):
        raise RequestError(f"priority: one of {', '.join(p.value for p in Priority)}", param="priority")
    proc = await _runtime(request).spawn(spec, task, quotas=quotas, priority=priority)
    return _json(process_json(proc, spec=True), status=201)


async def list_agents(request: web.Request) -> web.Response:
    raw = request.query.get("state")
    states = [s.strip() for s in raw.split(",") if s.strip()] if raw else None
    bad = [s for s in states or () if s not in STATES]
    if bad:
        raise RequestError(f"state: unknown state {bad[0]!r}; states: {', '.join(STATES)}", param="state")
    limit = _int_query(request, "limit", 200, 1, MAX_LIST)
    procs = _runtime(request).list(states=states, limit=limit)
    return _json({"data": [process_json(p) for p in procs]})


async def get_agent(request: web.Request) -> web.Response:
    return _json(process_json(_runtime(request).get(_pid(request)), spec=True))


async def suspend(request: web.Request) -> web.Response:
    return _json(process_json(await _runtime(request).suspend(_pid(request))))


async def resume(request: web.Request) -> web.Response:
    return _json(process_json(await _runtime(request).resume(_pid(request))))


async def kill(request: web.Request) -> web.Response:
    return _json(process_json(await _runtime(request).kill(_pid(request))))


async def message(request: web.Request) -> web.Response:
    pid = _pid(request)
    runtime = _runtime(request)
    runtime.get(pid)  # an unknown pid is a 404 whatever the body
    body = await read_json(request)
    _unknown_fields(body, ("content",))
    content = body.get("content")
    if not isinstance(content, str) or not content.strip() or len(content) > MAX_MESSAGE:
        raise RequestError(f"content: a non-empty string of at most {MAX_MESSAGE} characters", param="content")
    seq = await runtime.message(pid, content)
    return _json({"pid": pid, "seq": seq}, status=201)


async def update(request: web.Request) -> web.Response:
    """Change an agent's quotas (raise one an agent reached, then resume it)."""
    pid = _pid(request)
    runtime = _runtime(request)
    runtime.get(pid)
    body = await read_json(request)
    _unknown_fields(body, ("quotas",))
    if "quotas" not in body:
        raise RequestError('quotas: Field required (the limits to change, e.g. {"steps": 100})', param="quotas")
    changes = check_quotas(body["quotas"])
    if not changes:
        raise RequestError('quotas: name at least one limit, e.g. {"steps": 100}', param="quotas")
    return _json(process_json(await runtime.set_quotas(pid, changes)))


async def logs(request: web.Request) -> web.Response:
    pid = _pid(request)
    after = _int_query(request, "after", 0, 0, MAX_PID)
    limit = _int_query(request, "limit", MAX_LOGS, 1, MAX_LOGS)
    return _json({"data": _runtime(request).logs(pid, after=after, limit=limit)})


# -- the live stream ----------------------------------------------------------------------------
def _sse(event: str, data: Any, *, id_: int | None = None) -> bytes:
    head = b"id: %d\n" % id_ if id_ is not None else b""
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data, default=str) + b"\n\n"


def _state(event: AgentStateChanged) -> dict[str, Any]:
    return {"pid": event.pid, "state": event.state, "previous": event.previous, "reason": event.reason,
            "at": event.ts}


def _last_event_id(request: web.Request) -> int:
    """Where the stream starts: `?after=N`, else the Last-Event-ID a reconnecting client sends."""
    raw = request.headers.get("Last-Event-ID")
    raw = raw.strip(" \t") if raw is not None else ""
    if raw and (not raw.isascii() or not raw.isdigit() or int(raw) > MAX_PID):
        raise RequestError("Last-Event-ID: the seq of the last log entry received (a whole number)",
                           param="Last-Event-ID")
    if request.query.get("after") is not None:
        return _int_query(request, "after", 0, 0, MAX_PID)
    return int(raw) if raw else 0


async def events(request: web.Request) -> web.StreamResponse:
    """One agent's log entries and state changes as server-sent events, until the agent ends.

    `agent` first (the process as it is), then the log entries after `after` (or Last-Event-ID),
    then live: `log` (id: its seq) and `state` as they happen; `end` (the process as it ended)
    closes the stream. A suspended agent's stream stays open: it may be resumed.
    """
    pid = _pid(request)
    runtime = _runtime(request)
    last = _last_event_id(request)
    # Subscribed before the backlog is read: nothing written in between is missed (entries are
    # read from the table, so one seen twice is sent once and a dropped event loses nothing).
    sub = runtime.events.subscribe(
        accepts=lambda e: isinstance(e, AgentLogged | AgentStateChanged) and e.pid == pid)
    try:
        proc = runtime.get(pid)
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await response.write(_sse("agent", process_json(proc)))

        async def send_logs() -> None:
            nonlocal last
            while True:
                entries = runtime.logs(pid, after=last, limit=MAX_LOGS)
                if not entries:
                    return
                await response.write(b"".join(_sse("log", e, id_=e["seq"]) for e in entries))
                last = entries[-1]["seq"]

        await send_logs()
        while not proc.state.terminal:
            try:
                event = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                proc = runtime.get(pid)  # in case its last event was dropped
                continue
            await send_logs()
            if isinstance(event, AgentStateChanged):
                await response.write(_sse("state", _state(event)))
            proc = runtime.get(pid)
        while not sub.queue.empty():  # the state changes it went through on its way out
            event = sub.queue.get_nowait()
            if isinstance(event, AgentStateChanged):
                await response.write(_sse("state", _state(event)))
        await send_logs()  # what it wrote as it ended (its result)
        await response.write(_sse("end", process_json(runtime.get(pid))))
        return response
    finally:
        sub.close()  # the agent ended, or the client left (the handler is cancelled)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/agents", spawn)
    app.router.add_get("/api/agents", list_agents)
    app.router.add_get("/api/agents/{pid}", get_agent)
    app.router.add_patch("/api/agents/{pid}", update)
    app.router.add_post("/api/agents/{pid}/suspend", suspend)
    app.router.add_post("/api/agents/{pid}/resume", resume)
    app.router.add_post("/api/agents/{pid}/kill", kill)
    app.router.add_post("/api/agents/{pid}/messages", message)
    app.router.add_get("/api/agents/{pid}/logs", logs)
    app.router.add_get("/api/agents/{pid}/events", events)
