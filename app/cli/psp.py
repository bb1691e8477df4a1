"""`byenatos psp …`: see, explain and control the Personal System Prompt."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.output import table
from app.kernel.errors import BadRequestError

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

DELETE_WORDS = "delete everything"


def add_parser(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("psp", help="your Personal System Prompt: preview, rules, apps, pause, export, delete")
    ps = p.add_subparsers(dest="psp_command", metavar="ACTION", required=True, parser_class=parser_class)
    ps.add_parser("show", help="status: records, vectors, pause, which apps get a PSP, Core rules")
    v = ps.add_parser("preview", help="exactly what an app would get for a message, and why")
    v.add_argument("query", nargs="*", help="the message to build it for")
    v.add_argument("--app", help="as this app sees it (default: everything, as you see it)")
    v.add_argument("--shared", action="store_true", help="with --app: as if it had the hinata:read scope")
    v.add_argument("--model", help="size the budget for this model's context window")
    v.add_argument("--budget", type=int, help="tokens for the PSP (default: from the model)")
    v.add_argument("--explain", action="store_true", help="list each item's scores")
    v.add_argument("--json", action="store_true")
    ps.add_parser("pause", help="stop injecting the PSP into every app's requests")
    ps.add_parser("resume", help="inject again (for the apps that are switched on)")
    en = ps.add_parser("enable", help="inject the PSP into this app's chat requests")
    en.add_argument("app")
    dis = ps.add_parser("disable", help="stop injecting the PSP into this app's requests")
    dis.add_argument("app")
    r = ps.add_parser("rules", help="Core rules: list, add, edit, pin, unpin, forget")
    rs = r.add_subparsers(dest="rules_command", metavar="ACTION", parser_class=parser_class)
    rs.add_parser("list", help="every Core rule with its id (also what `psp rules` alone prints)")
    ra = rs.add_parser("add", help="a new rule")
    ra.add_argument("text")
    ra.add_argument("--pin", action="store_true", help="always include it")
    re_ = rs.add_parser("edit", help="change a rule's text")
    re_.add_argument("id", type=int)
    re_.add_argument("text")
    for name, what in (("pin", "always include a rule"), ("unpin", "include a rule only when it fits"),
                       ("forget", "delete a rule")):
        x = rs.add_parser(name, help=what)
        x.add_argument("id", type=int)
    e = ps.add_parser("export", help="everything as JSONL (records, derived data, rules)")
    e.add_argument("file", nargs="?", help="write here instead of standard output")
    d = ps.add_parser("delete-all", help="delete every record, rule and vector")
    d.add_argument("--yes", action="store_true", help=f"don't ask; otherwise type '{DELETE_WORDS}'")
    a = ps.add_parser("audit", help="who read your personal data, and when")
    a.add_argument("--app")
    a.add_argument("--limit", type=int, default=50)
    s = ps.add_parser(
        "set", help="a setting: enhance_with_model true|false, enhance_model M, psp_max_tokens N"
    )
    s.add_argument("key")
    s.add_argument("value")


async def psp(args: argparse.Namespace) -> int:
    from app.kernel.kernel import Kernel
    from app.kernel.personal.service import Caller

    async with Kernel() as kernel:
        personal = kernel.personal
        user = Caller.user()
        action = args.psp_command
        if action == "show":
            return await _show(kernel)
        if action == "preview":
            return await _preview(kernel, args)
        if action in ("pause", "resume"):
            personal.set_paused(action == "pause")
            print(
                "personalization paused: no app gets a PSP"
                if action == "pause"
                else "personalization resumed"
            )
            return 0
        if action in ("enable", "disable"):
            personal.set_injection(args.app, action == "enable")
            print(f"{args.app}: PSP {'on' if action == 'enable' else 'off'}")
            return 0
        if action == "rules":
            return await _rules(kernel, args)
        if action == "export":
            return await _export(kernel, args.file)
        if action == "delete-all":
            if not args.yes:
                if not sys.stdin.isatty():
                    raise BadRequestError("delete-all needs --yes when not run interactively")
                prompt = f"This deletes all your records, rules and vectors. Type '{DELETE_WORDS}': "
                answer = await asyncio.to_thread(input, prompt)
                if answer.strip() != DELETE_WORDS:
                    print("nothing deleted")
                    return 1
            n = await personal.delete_all(user)
            print(f"deleted {n} records, every rule and every vector")
            return 0
        if action == "audit":
            rows = await personal.audit_log(args.limit, args.app)
            print(
                table(
                    ["TIME", "APP", "ACTION", "DETAIL"],
                    [(_time(r["ts"]), r["app"], r["action"], _detail(r["detail"])) for r in rows],
                )
                if rows
                else "no reads recorded yet"
            )
            return 0
        return _set(kernel, args.key, args.value)


async def _show(kernel: Kernel) -> int:
    from app.kernel.personal.service import Caller

    personal = kernel.personal
    st = await personal.status()
    print(f"records: {st['records']}  (vectors pending: {st['vector_backlog']})")
    print(
        f"retrieval: {'full-text only — ' + st['embedding_problem'] if st['embedding_problem'] else 'hybrid (vectors + full text)'}"
    )
    print(f"personalization: {'PAUSED' if st['paused'] else 'on'}")
    apps = st["apps"]
    print(
        "apps with a PSP: "
        + (", ".join(a for a, on in sorted(apps.items()) if on) or "none yet (`byenatos psp enable APP`)")
    )
    rules = await personal.rules(Caller.user())
    print("Core rules:" if rules else 'Core rules: none (`byenatos psp rules add "…" --pin`)')
    for r in rules:
        print(f"  {r['id']:>3} {'📌' if r['pinned'] else '  '} {r['text']}")
    print(f"encrypted store: {st['database']}")
    return 0


async def _preview(kernel: Kernel, args: argparse.Namespace) -> int:
    from app.kernel.personal.service import Caller

    personal = kernel.personal
    caller = (
        Caller.user() if not args.app else Caller(args.app, frozenset({"hinata:read"} if args.shared else ()))
    )
    window = None
    if args.model:
        _, spec = kernel.resolve(args.model)
        window = spec.context_window
    personal.want_vectors()  # a one-shot process: load the model now rather than answer full-text only
    await personal.wait_vectors()
    psp = await personal.build_psp(caller, " ".join(args.query), budget=args.budget, context_window=window)
    if args.json:
        print(json.dumps(psp.to_dict(), indent=2, ensure_ascii=False))
        return 0
    if not psp.items:
        print("(nothing to inject: no rules or records visible to this app)")
        return 0
    print(psp.text)
    print(
        f"\n— {psp.version}: {psp.tokens} of {psp.budget} tokens, {len(psp.items)} items, "
        f"{psp.retrieval} retrieval, built in {psp.took_ms:.1f} ms"
    )
    if args.explain:
        rows = [
            (
                i.layer,
                i.id,
                f"{i.scores.get('total', 0):.2f}",
                f"{i.scores.get('importance', 0):.2f}",
                f"{i.scores.get('relevance', 0):.2f}",
                f"{i.scores.get('freshness', 0):.2f}",
                f"{i.scores.get('frequency', 0):.2f}",
                i.tokens,
            )
            for i in psp.items
        ]
        print(table(["LAYER", "ID", "SCORE", "IMPORT.", "RELEV.", "FRESH.", "FREQ.", "TOKENS"], rows))
    return 0


async def _rules(kernel: Kernel, args: argparse.Namespace) -> int:
    from app.kernel.personal.service import Caller

    personal = kernel.personal
    user = Caller.user()
    cmd = args.rules_command
    if cmd == "add":
        rule = await personal.add_rule(args.text, args.pin, user)
        print(f"added rule {rule['id']}{' (pinned)' if rule['pinned'] else ''}")
    elif cmd == "edit":
        await personal.update_rule(args.id, user, text=args.text)
        print(f"rule {args.id} updated")
    elif cmd in ("pin", "unpin"):
        await personal.update_rule(args.id, user, pinned=cmd == "pin")
        print(f"rule {args.id} {cmd}ned")
    elif cmd == "forget":
        await personal.delete_rule(args.id, user)
        print(f"rule {args.id} forgotten")
    else:
        rules = await personal.rules(user)
        print(
            table(
                ["ID", "PINNED", "RULE"], [(r["id"], "yes" if r["pinned"] else "", r["text"]) for r in rules]
            )
            if rules
            else "no Core rules yet"
        )
    return 0


async def _export(kernel: Kernel, file: str | None) -> int:
    from app.kernel.personal.service import Caller

    chunks = [chunk async for chunk in kernel.personal.export(Caller.user())]
    data = b"".join(chunks)
    if file:
        await asyncio.to_thread(_write, file, data)
        lines = data.count(b"\n")
        print(f"exported {lines} lines to {file}")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _write(file: str, data: bytes) -> None:
    Path(file).expanduser().write_bytes(data)


def _set(kernel: Kernel, key: str, value: str) -> int:
    parsed: object = value
    if value.lower() in ("true", "on", "yes"):
        parsed = True
    elif value.lower() in ("false", "off", "no"):
        parsed = False
    elif value.isdigit():
        parsed = int(value)
    kernel.personal.set_setting(key, parsed)
    print(f"{key} = {json.dumps(parsed)}")
    return 0


def _time(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _detail(d: dict) -> str:
    parts = []
    for k, v in d.items():
        if isinstance(v, list):
            v = f"{len(v)} records" if k in ("records", "ids") else ",".join(map(str, v))[:40]
        parts.append(f"{k}={v}")
    return " ".join(parts)[:80]
