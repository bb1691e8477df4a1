"""`byenatos agents run|ps|logs|suspend|resume|kill|message|quota`: agents as processes.

Agents run in one kernel per home: the running daemon's (`byenatos serve`) or the desktop app's.
When one runs, every command here goes to its /api/agents with the user's admin token (found
through the runtime file, as `byenatos socket` finds it); the CLI never starts a kernel of its
own beside it, so an agent is never run by two processes.

With nothing running, the command starts the kernel here, in this process, with its gateway on
a free loopback port that only this process uses, and talks to it the same way. `run` then runs
the agent here and waits for it (as `--wait` does); Ctrl+C stops waiting, and the agent, durable,
goes on when ByenatOS next starts. `logs --follow` runs the agents it follows here while it
follows them.

An agent file named on the command line is read here, by the CLI, as the user, and sent as
text: the daemon never reads a path it is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.cli.output import table
from app.kernel.errors import BadRequestError, ByenatosError, NotFoundError, from_http_status

# httpx and the kernel are imported inside the functions: building the argument parser happens
# on every `byenatos …` start, `serve` included, and must stay cheap.

ENDED = ("done", "failed", "killed")
NOT_ENDED = ("ready", "running", "waiting_model", "waiting_tool", "waiting_approval", "waiting_input", "suspended")
AGENT_SUFFIXES = (".toml", ".yaml", ".yml")
PAGE = 1_000  # log entries per request (the API's limit)


def add_parser(sub: argparse._SubParsersAction, parser_class: type) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("agents", help="agents as processes: run, list, follow, suspend, resume, kill")
    asub = a.add_subparsers(dest="agents_command", metavar="ACTION", required=True, parser_class=parser_class)
    r = asub.add_parser("run", help="start an agent: a shipped one by name (assistant, research-notes) "
                                    "or an agent file (.toml, .yaml)")
    r.add_argument("agent", metavar="FILE|NAME")
    r.add_argument("task", nargs="*", metavar="TASK", help="what it should do (the words are joined)")
    r.add_argument("--quota", action="append", default=[], metavar="NAME=VALUE",
                   help="a limit on top of the agent file's, repeatable: tokens, cost, steps, tool_calls, "
                        "wall_s (e.g. --quota steps=20 --quota cost=0.5; 'none' removes one)")
    r.add_argument("--priority", help="how its model calls queue: interactive, normal or background")
    r.add_argument("--wait", action="store_true",
                   help="wait until it ends (or is suspended), showing its steps; print its answer")
    r.add_argument("--json", action="store_true", help="print the process as JSON")
    ps = asub.add_parser("ps", help="the agents that have not ended (--all: every one)")
    ps.add_argument("--all", action="store_true", help="ended agents too")
    ps.add_argument("--json", action="store_true", help="machine-readable output")
    lg = asub.add_parser("logs", help="an agent's log: its steps, tool calls, messages and state changes")
    lg.add_argument("pid", metavar="PID")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new entries until the agent ends")
    lg.add_argument("--json", action="store_true", help="one JSON object per entry")
    for action, words in (("suspend", "stop an agent after its current step (resume goes on from there)"),
                          ("resume", "resume a suspended agent at its last completed step"),
                          ("kill", "end an agent (and its children) for good")):
        p = asub.add_parser(action, help=words)
        p.add_argument("pid", metavar="PID")
    m = asub.add_parser("message", help="send a running agent a message (it reads it before its next step)")
    m.add_argument("pid", metavar="PID")
    m.add_argument("text", nargs="+", metavar="TEXT")
    q = asub.add_parser("quota", help="change an agent's quotas, e.g. raise the one it reached")
    q.add_argument("pid", metavar="PID")
    q.add_argument("quotas", nargs="+", metavar="NAME=VALUE", help="e.g. steps=100 cost=2 ('none' removes one)")
    u = asub.add_parser("undo", help="roll back every file an agent changed (it must not be running)")
    u.add_argument("pid", metavar="PID")
    u.add_argument("--dry-run", action="store_true", help="only list what would be rolled back")
    u.add_argument("--json", action="store_true", help="machine-readable output")


# -- reaching the kernel -------------------------------------------------------------------------
class _Client:
    """/api/agents of the kernel serving this home: the running one's, or one started here."""

    def __init__(self, base: str, token: str, *, local: bool) -> None:
        self.base, self.token, self.local = base, token, local

    async def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=60, trust_env=False) as c:
                r = await c.request(method, f"{self.base}{path}", json=body, params=params,
                                    headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as e:
            raise ByenatosError(f"the running ByenatOS did not answer: {e}") from None
        if r.status_code >= 400:
            raise _error(r.status_code, r.text)
        return r.json() if r.content else None

    async def events(self, pid: str, after: int = 0) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The agent's event stream: ("agent" | "log" | "state" | "end", data), until it ends."""
        import httpx

        timeout = httpx.Timeout(60, read=None)  # a waiting agent may say nothing for a long time
        try:
            async with (httpx.AsyncClient(timeout=timeout, trust_env=False) as c,
                        c.stream("GET", f"{self.base}/api/agents/{pid}/events", params={"after": after},
                                 headers={"Authorization": f"Bearer {self.token}"}) as r):
                if r.status_code >= 400:
                    raise _error(r.status_code, (await r.aread()).decode(errors="replace"))
                name, data = "message", []
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        name = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        data.append(line.partition(":")[2].strip())
                    elif not line and data:
                        yield name, json.loads("\n".join(data))
                        name, data = "message", []
        except httpx.HTTPError as e:
            raise ByenatosError(f"the running ByenatOS stopped answering: {e}") from None


def _error(status: int, text: str) -> ByenatosError:
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text[:300] or f"HTTP {status}"
    return from_http_status(status, message)


def _admin_token(paths: Any) -> str:
    """The user's admin token, read as the CLI's other commands read it (no kernel started)."""
    from app.kernel.security.apps import AppRegistry
    from app.kernel.security.secrets import SecretStore
    from app.kernel.store import open_database

    db = open_database(paths.database)
    try:
        return AppRegistry(SecretStore(paths.secrets_file)).admin_token()
    finally:
        db.close()


@contextlib.asynccontextmanager
async def connect() -> AsyncIterator[_Client]:
    """The running ByenatOS's agents, or (nothing running) a kernel started in this process."""
    import asyncio

    from app.kernel.config import Paths, load_settings
    from app.kernel.runtime_file import locate

    paths = Paths.default()
    found = await locate(paths, load_settings(paths).gateway)
    if found is not None:
        yield _Client(found[0], await asyncio.to_thread(_admin_token, paths), local=False)
        return
    from app.kernel.gateway.server import GatewayServer
    from app.kernel.kernel import Kernel

    if not logging.getLogger().isEnabledFor(logging.INFO):
        # DBOS logs a cancelled run (a suspend, a kill, Ctrl+C) as an error with its traceback;
        # here that is the user's own action, said in one line. `-v` shows it.
        logging.getLogger("dbos").setLevel(logging.CRITICAL)
    async with Kernel(paths) as kernel:
        server = await GatewayServer(kernel, host="127.0.0.1", port=0).start()
        try:
            yield _Client(server.url, kernel.apps.admin_token(), local=True)
        finally:
            await server.stop()


# -- the commands --------------------------------------------------------------------------------
async def agents(args: argparse.Namespace) -> int:
    action = args.agents_command
    if action == "run":
        body = _spawn_body(args)  # a bad file or quota is said before anything starts
    async with connect() as client:
        if action == "run":
            return await _run(client, body, args)
        if action == "ps":
            return await _ps(client, args)
        if action == "logs":
            return await _logs(client, args)
        if action == "message":
            sent = await client.call("POST", f"/api/agents/{args.pid}/messages", {"content": " ".join(args.text)})
            proc = await client.call("GET", f"/api/agents/{args.pid}")
            print(f"sent message {sent['seq']} to agent {_who(proc)}")
            if client.local:
                print(_NOT_RUNNING)
            return 0
        if action == "quota":
            proc = await client.call("PATCH", f"/api/agents/{args.pid}", {"quotas": parse_quotas(args.quotas)})
            print(f"agent {_who(proc)}: quotas {_quota_text(proc['quotas'])}")
            if proc["state"] == "suspended":
                print(f"it is suspended ({proc['reason']}): `byenatos agents resume {proc['pid']}` resumes it")
            return 0
        if action == "undo":
            from app.cli.approvals import undo  # with the other commands about what agents did

            return await undo(client, args)
        proc = await client.call("POST", f"/api/agents/{args.pid}/{action}")  # suspend, resume, kill
        print(f"agent {_who(proc)}: {_state_text(proc)}")
        if action == "resume" and client.local:
            print(_NOT_RUNNING)
        return 0


_NOT_RUNNING = ("(ByenatOS is not running: the agent goes on when `byenatos serve` or the app starts, "
                "or here with `byenatos agents logs PID --follow`)")


def _spawn_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"task": " ".join(args.task)}
    target = args.agent
    path = Path(target).expanduser()
    if path.suffix.lower() in AGENT_SUFFIXES or "/" in target or path.exists():
        try:
            body["spec"] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFoundError(f"no agent file at {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise BadRequestError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
        body["spec_format"] = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "toml"
    else:
        body["agent"] = target
    if args.quota:
        body["quotas"] = parse_quotas(args.quota, flag="--quota ")
    if args.priority is not None:
        body["priority"] = args.priority
    return body


def parse_quotas(items: list[str], *, flag: str = "") -> dict[str, Any]:
    """`steps=20 cost=0.5 wall_s=none` → {"steps": 20, "cost": 0.5, "wall_s": None}."""
    quotas: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or not name or not raw:
            raise BadRequestError(f"{flag}{item!r}: expected NAME=VALUE, e.g. steps=50")
        if raw.lower() in ("none", "off", "unlimited"):
            quotas[name] = None
            continue
        try:
            quotas[name] = int(raw)
        except ValueError:
            try:
                quotas[name] = float(raw)
            except ValueError:
                raise BadRequestError(f"{flag}{item!r}: {raw!r} is not a number (or 'none' for no limit)") from None
    return quotas


async def _run(client: _Client, body: dict[str, Any], args: argparse.Namespace) -> int:
    proc = await client.call("POST", "/api/agents", body)
    pid = proc["pid"]
    if not args.wait and not client.local:
        if args.json:
            print(json.dumps(proc, indent=2))
        else:
            print(f"spawned agent {_who(proc)}; follow it with `byenatos agents logs {pid} --follow`")
        return 0
    print(f"agent {_who(proc)} running here (Ctrl+C stops waiting; the agent goes on when ByenatOS next starts)"
          if client.local else f"agent {_who(proc)} spawned", file=sys.stderr, flush=True)
    end = proc
    async for name, data in client.events(str(pid)):
        if name == "log":
            print(_log_line(data), file=sys.stderr, flush=True)
        elif name == "end" or (name == "state" and data["state"] == "suspended"):
            end = data if name == "end" else await client.call("GET", f"/api/agents/{pid}")
            break
    if args.json:
        print(json.dumps(end, indent=2))
    elif end["state"] == "done":
        print(end.get("result") or "")
    if end["state"] == "done":
        return 0
    hint = ""
    if end["state"] == "suspended":
        hint = f"; `byenatos agents resume {pid}` resumes it"
        if end["reason"].startswith("quota reached"):
            hint = f"; raise it with `byenatos agents quota {pid} NAME=VALUE`, then `byenatos agents resume {pid}`"
    raise ByenatosError(f"agent {_who(end)} {_state_text(end)}{hint}")


async def _ps(client: _Client, args: argparse.Namespace) -> int:
    params = {"limit": 1000} if args.all else {"limit": 1000, "state": ",".join(NOT_ENDED)}
    procs = (await client.call("GET", "/api/agents", params=params))["data"]
    if args.json:
        print(json.dumps(procs, indent=2))
        return 0
    if not procs:
        print("no agents" + ("" if args.all else " running (`byenatos agents ps --all` lists ended ones too)"))
        return 0
    now = time.time()
    rows = [
        (p["pid"], p["name"], p["state"], p["usage"]["steps"], f"{p['usage']['tokens']:,}",
         f"${p['usage']['cost']:.4f}", _age(now - p["created_at"]), _short(p["reason"], 60))
        for p in procs
    ]
    print(table(["PID", "NAME", "STATE", "STEPS", "TOKENS", "COST", "AGE", "REASON"], rows))
    return 0


async def _logs(client: _Client, args: argparse.Namespace) -> int:
    def show(entry: dict[str, Any]) -> None:
        print(json.dumps(entry) if args.json else _log_line(entry), flush=True)

    if args.follow:
        async for name, data in client.events(args.pid):
            if name == "log":
                show(data)
        return 0
    after = 0
    while True:
        entries = (await client.call("GET", f"/api/agents/{args.pid}/logs",
                                     params={"after": after, "limit": PAGE}))["data"]
        for entry in entries:
            show(entry)
        if len(entries) < PAGE:
            return 0
        after = entries[-1]["seq"]


# -- words ---------------------------------------------------------------------------------------
def _who(proc: dict[str, Any]) -> str:
    return f"{proc['pid']} ({proc['name']})"


def _state_text(proc: dict[str, Any]) -> str:
    words = proc["state"].replace("_", " ")
    return f"{words}: {proc['reason']}" if proc.get("reason") else words


def _quota_text(quotas: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in quotas.items()) or "no limits"


def _log_line(entry: dict[str, Any]) -> str:
    at = time.strftime("%H:%M:%S", time.localtime(entry["at"]))
    return f"{entry['seq']:>4}  {at}  {entry['kind']:<8}  {entry['summary']}"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
