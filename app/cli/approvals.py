"""`byenatos approvals …` and `byenatos tools …`: what agents may run, the questions they ask, what they ran.

    byenatos approvals [list] [--all] [--json]       the tool calls waiting for your answer
    byenatos approvals approve ID [--always]         run it (always: allow that tool for that app from now on)
    byenatos approvals deny ID
    byenatos tools rules [--app APP | --agent NAME]  the rules, and what each built-in tool gets
    byenatos tools allow|ask|deny TOOL [--app APP | --agent NAME]
    byenatos tools clear TOOL [--app APP | --agent NAME]
    byenatos tools audit [--app APP] [--pid PID] [--tool TOOL] [--outcome O] [--limit N] [--json]

TOOL is a tool's name, `mcp:<server>`, `mcp:*`, `risk:<read|write|code|network>` or `*`; a rule
with neither --app nor --agent is for every app. Like `byenatos agents`, these talk to the
running ByenatOS (or a kernel started here when nothing runs: rules and the audit are in the
home's database; approval requests exist only while an agent waits in a running ByenatOS).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from urllib.parse import quote

from app.cli.output import table

DECISIONS = ("allow", "ask", "deny")
OUTCOMES = ("ok", "error", "denied", "timeout")


def add_parser(sub: argparse._SubParsersAction, parser_class: type) -> None:  # type: ignore[type-arg]
    a = sub.add_parser("approvals", help="tool calls waiting for your approval: list, approve, deny")
    asub = a.add_subparsers(dest="approvals_command", metavar="ACTION", parser_class=parser_class)
    ls = asub.add_parser("list", help="the requests waiting for an answer (the default)")
    for p in (a, ls):
        p.add_argument("--all", action="store_true", help="answered and expired requests too (the latest 100)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
    ap = asub.add_parser("approve", help="let the tool call run")
    ap.add_argument("id", metavar="ID")
    ap.add_argument("--always", action="store_true", help="and allow this tool for this app from now on")
    dn = asub.add_parser("deny", help="refuse the tool call (the agent is told, and goes on without it)")
    dn.add_argument("id", metavar="ID")

    t = sub.add_parser("tools", help="which tools agents and apps may run (allow, ask, deny) and what they ran")
    tsub = t.add_subparsers(dest="tools_command", metavar="ACTION", required=True, parser_class=parser_class)
    rules = tsub.add_parser("rules", help="the rules you set, and the decision each built-in tool gets")
    _who(rules)
    rules.add_argument("--json", action="store_true", help="machine-readable output")
    for decision, words in (("allow", "run it without asking"), ("ask", "ask you before each call"),
                            ("deny", "never run it")):
        p = tsub.add_parser(decision, help=f"a rule: {words}")
        p.add_argument("tool", metavar="TOOL", help="a tool's name, mcp:<server>, mcp:*, risk:<class> or *")
        _who(p)
    cl = tsub.add_parser("clear", help="remove a rule (the next rule, or the default, applies again)")
    cl.add_argument("tool", metavar="TOOL")
    _who(cl)
    au = tsub.add_parser("audit", help="the tool calls made, newest first")
    _who(au)
    au.add_argument("--pid", type=int, help="one agent's calls")
    au.add_argument("--tool", help="one tool's calls")
    au.add_argument("--outcome", choices=OUTCOMES)
    au.add_argument("--limit", type=int, default=50, help="how many (default 50, at most 1000)")
    au.add_argument("--json", action="store_true", help="one JSON object per call")


def _who(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--app", help="an app id (default: every app)")
    g.add_argument("--agent", metavar="NAME", help="a kernel-run agent by name (its app is agent-NAME)")


def _app_of(args: argparse.Namespace) -> str | None:
    if getattr(args, "agent", None):
        from app.kernel.security.apps import app_slug

        return app_slug(f"agent-{args.agent}")
    return getattr(args, "app", None)


# -- the commands --------------------------------------------------------------------------------
async def approvals(args: argparse.Namespace) -> int:
    from app.cli.agents import connect

    action = args.approvals_command or "list"
    async with connect() as client:
        if action == "list":
            return await _list(client, args)
        path = f"/api/approvals/{quote(args.id, safe='')}/answer"
        answer = "deny" if action == "deny" else ("always" if args.always else "once")
        done = await client.call("POST", path, {"answer": answer})
        words = {"approved": "approved once", "always": f"approved; {done['tool']} is allowed for {done['app']} "
                 "from now on (`byenatos tools rules` lists the rules)", "denied": "denied"}[done["state"]]
        print(f"request {done['id']} ({done['tool']} for {_agent(done)}): {words}")
        return 0


async def _list(client: Any, args: argparse.Namespace) -> int:
    params = {"state": "all", "limit": 100} if args.all else {}
    rows = (await client.call("GET", "/api/approvals", params=params))["data"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no approval requests" + ("" if args.all else " waiting")
              + (" (ByenatOS is not running: agents ask only while they run)" if client.local else ""))
        return 0
    now = time.time()
    shown = [(r["id"], _agent(r), r["tool"], r["risk"], _short(r["arguments"] or "", 50), r["state"],
              f"{max(0, int(r['expires_at'] - now))}s" if r["state"] == "pending" else "")
             for r in rows]
    print(table(["ID", "FOR", "TOOL", "RISK", "ARGUMENTS", "STATE", "EXPIRES IN"], shown))
    if not args.all:
        first = rows[0]["id"]
        print(f"\n`byenatos approvals approve {first}` runs it (--always: from now on), "
              f"`byenatos approvals deny {first}` refuses it")
    return 0


async def tools(args: argparse.Namespace) -> int:
    from app.cli.agents import connect
    from app.kernel.errors import BadRequestError

    action = args.tools_command
    app = _app_of(args)
    async with connect() as client:
        if action in DECISIONS:
            rule = await client.call("PUT", "/api/tools/permissions",
                                     {"tool": args.tool, "decision": action, "app": app or "*"})
            print(f"rule set: {_rule_words(rule)}")
            return 0
        if action == "clear":
            params = {"tool": args.tool, **({"app": app} if app else {})}
            rule = await client.call("DELETE", "/api/tools/permissions", params=params)
            print(f"rule cleared: {_rule_words(rule)}")
            return 0
        if action == "rules":
            data = await client.call("GET", "/api/tools/permissions", params={"app": app} if app else None)
            if args.json:
                print(json.dumps(data, indent=2))
                return 0
            _print_rules(data)
            return 0
        if not 1 <= args.limit <= 1000:
            raise BadRequestError("--limit: a whole number from 1 to 1000")
        params = {k: v for k, v in {"app": app, "pid": args.pid, "tool": args.tool, "outcome": args.outcome,
                                    "limit": args.limit}.items() if v is not None}
        rows = (await client.call("GET", "/api/tools/audit", params=params))["data"]
        if args.json:
            for row in rows:
                print(json.dumps(row))
            return 0
        if not rows:
            print("no tool calls" + (" match" if len(params) > 1 else " yet"))
            return 0
        print(table(["ID", "WHEN", "APP", "PID", "TOOL", "OUTCOME", "MS", "ARGS SHA-256", "DETAIL"], [
            (r["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"])), r["app"], r["pid"] or "",
             r["tool"], r["outcome"], f"{r['duration_ms']:.0f}", r["args_sha256"][:12], _short(r["detail"], 50))
            for r in rows]))
        return 0


async def undo(client: Any, args: argparse.Namespace) -> int:
    """`byenatos agents undo PID [--dry-run]`: roll back the files an agent changed."""
    from app.kernel.errors import ByenatosError

    pid = quote(args.pid, safe="")
    if args.dry_run:
        plan = await client.call("GET", f"/api/agents/{pid}/undo")
        if args.json:
            print(json.dumps(plan, indent=2))
        elif not plan["data"]:
            print(f"agent {args.pid} has no file changes to roll back")
        else:
            print(table(["WHEN", "PATH", "BEFORE"], [
                (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])), e["path"],
                 "did not exist" if e["kind"] == "missing" else e["kind"]) for e in plan["data"]]))
        return 0
    report = await client.call("POST", f"/api/agents/{pid}/undo")
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["changes"] and not report["failed"]:
        print(f"agent {args.pid} has no file changes to roll back")
    else:
        print(f"agent {args.pid}: {report['changes']} change(s) rolled back")
        for path in report["restored"]:
            print(f"  restored  {path}")
        for path in report["deleted"]:
            print(f"  deleted   {path} (the agent created it)")
        for path in report["kept"]:
            print(f"  kept      {path} (a folder the agent created; something else is in it now)")
    if report["failed"]:
        first = report["failed"][0]
        raise ByenatosError(f"could not restore {first['path']}: {first['error']}; {report['left']} change(s) "
                            f"left; fix that and run `byenatos agents undo {args.pid}` again")
    return 0


def _print_rules(data: dict[str, Any]) -> None:
    rules = data["rules"]
    if rules:
        print(table(["APP", "TOOL", "DECISION", "NOTE"],
                    [(r["app"], r["tool"], r["decision"], _short(r["note"], 40)) for r in rules]))
    else:
        print("no rules: every tool gets the default for its risk (read: allow; write, code, network "
              "and MCP tools: ask)")
    who = "every app" if data["app"] == "*" else data["app"]
    print(f"\nbuilt-in tools for {who}:")
    print(table(["TOOL", "RISK", "DECISION", "FROM"],
                [(t["tool"], t["risk"], t["decision"], _rule_words(t["rule"]) if t["rule"] else "default")
                 for t in data["tools"]]))


# -- words ---------------------------------------------------------------------------------------
def _rule_words(rule: dict[str, Any]) -> str:
    who = "every app" if rule["app"] == "*" else rule["app"]
    return f"{rule['decision']} {rule['tool']} for {who}"


def _agent(row: dict[str, Any]) -> str:
    return f"{row['app']} (agent {row['pid']})" if row.get("pid") else row["app"]


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
