"""`byenatos hinata add|import|search|show|forget`: the user's own records, from the terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.output import table
from app.kernel.errors import BadRequestError, NotFoundError

if TYPE_CHECKING:
    from app.kernel.kernel import Kernel

VECTOR_WAIT = 120.0  # seconds to let the new records get their vectors before exiting


def add_parser(sub: argparse._SubParsersAction, parser_class: type[argparse.ArgumentParser]) -> None:
    h = sub.add_parser("hinata", help="your personal records (HiNATA): add, import, search, forget")
    hs = h.add_subparsers(dest="hinata_command", metavar="ACTION", required=True, parser_class=parser_class)
    a = hs.add_parser(
        "add", help='remember something: `hinata add "I prefer short answers" --tag preference`'
    )
    a.add_argument("highlight", help="what to remember (the passage, the fact)")
    a.add_argument("--note", default="", help="your own words about it")
    a.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    a.add_argument("--access", choices=("private", "shared", "public"), default="private")
    a.add_argument("--address", default="", help="where it came from: URL or file path")
    a.add_argument("--id", help="a stable id (adding the same id again updates, never duplicates)")
    i = hs.add_parser(
        "import", help="import a folder of Markdown notes, or a .jsonl file of records (- = stdin)"
    )
    i.add_argument("path")
    i.add_argument("--access", choices=("private", "shared", "public"), help="access for imported notes")
    s = hs.add_parser(
        "search",
        help='find records by meaning, best first ("quoted words" must appear as written), tag, source or time',
    )
    s.add_argument("query", nargs="*", help='a question or words; "a phrase" in quotes must appear verbatim')
    s.add_argument("--phrase", help="words that must appear exactly, in this order")
    s.add_argument("--mode", choices=("hybrid", "fts", "vector"), default="hybrid", help=argparse.SUPPRESS)
    s.add_argument("--tag")
    s.add_argument("--source", help="the app that submitted them")
    s.add_argument("--since", help="ISO date or time")
    s.add_argument("--until", help="ISO date or time")
    s.add_argument("--access", choices=("private", "shared", "public"))
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    g = hs.add_parser("show", help="one record in full, with what ByenatOS derived from it")
    g.add_argument("id")
    f = hs.add_parser("forget", help="delete records everywhere (store, full-text index, vectors)")
    f.add_argument("ids", nargs="+")


async def hinata(args: argparse.Namespace) -> int:
    from app.kernel.kernel import Kernel
    from app.kernel.personal.service import Caller

    async with Kernel() as kernel:
        personal = kernel.personal
        user = Caller.user()
        action = args.hinata_command
        if action == "add":
            record = {
                "highlight": args.highlight,
                "note": args.note,
                "tag": args.tag,
                "access": args.access,
                "address": args.address,
            }
            if args.id:
                record["id"] = args.id
            (result,) = await personal.add(record, user)
            print(f"{result['status']} {result['id']}")
            await _settle(kernel)
            return 0
        if action == "import":
            return await _import(kernel, args)
        if action == "search":
            return await _search(kernel, args)
        if action == "show":
            print(json.dumps(await personal.get(args.id, user), indent=2, ensure_ascii=False))
            return 0
        missing = []
        for rid in args.ids:
            try:
                await personal.delete(rid, user)
                print(f"forgot {rid}")
            except NotFoundError:  # keep going with the others
                missing.append(rid)
        for m in missing:
            print(f"byenatos: no record {m!r}", file=sys.stderr)
        await _settle(kernel)
        return 1 if missing else 0


async def _settle(kernel: Kernel) -> None:
    """Let vector work for what we just wrote finish, so the index matches the store on exit."""
    try:
        await kernel.personal.wait_vectors(VECTOR_WAIT)
    except TimeoutError:
        print("byenatos: vectors are still being computed; the daemon will finish them", file=sys.stderr)


async def _import(kernel: Kernel, args: argparse.Namespace) -> int:
    from app.kernel.personal.service import Caller

    personal = kernel.personal
    user = Caller.user()
    if args.path == "-":
        report = await personal.import_jsonl(sys.stdin.read(), user)
    else:
        path, kind = await asyncio.to_thread(_locate, args.path)
        if kind == "dir":
            report = await personal.import_markdown(path, user, access=args.access)
        elif kind == "file":
            text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="replace")
            report = await personal.import_jsonl(text, user)
        else:
            raise BadRequestError(f"{args.path}: no such file or folder")
    d = report.to_dict()
    print(
        f"created {d['created']}, updated {d['updated']}, unchanged {d['unchanged']}"
        + (f", skipped {d['skipped']} (not modified)" if d["skipped"] else "")
        + (f", removed {d['removed']} (file gone)" if d["removed"] else "")
        + (f", {d['error_count']} errors" if d["error_count"] else "")
    )
    for e in report.errors[:20]:
        print(f"  {e}", file=sys.stderr)
    await _settle(kernel)
    return 1 if report.errors and not (report.created or report.updated or report.unchanged) else 0


async def _search(kernel: Kernel, args: argparse.Namespace) -> int:
    from app.kernel.personal.hinata import parse_time
    from app.kernel.personal.service import Caller

    result = await kernel.personal.search(
        Caller.user(),
        text=" ".join(args.query) or None,
        phrase=args.phrase,
        tag=args.tag,
        source=args.source,
        since=parse_time(args.since, "since"),
        until=parse_time(args.until, "until"),
        access=args.access,
        limit=args.limit,
        offset=args.offset,
        mode=args.mode,
    )
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    if not result["data"]:
        print("no records found")
        return 0
    if "time_range" in result:
        tr = result["time_range"]
        print(f"{tr['phrase']}: {tr['since'][:10]} to {tr['until'][:10]}")
    ranked = "score" in result["data"][0]
    rows = [
        (
            *((f"{r['score']:.2f}",) if ranked else ()),
            r["id"],
            r["timestamp"][:10],
            r["source"],
            r["access"],
            _short(r.get("passage") or r["highlight"] or r["note"]),
            " ".join("#" + t for t in r["tag"][:3]),
        )
        for r in result["data"]
    ]
    head = ["ID", "DATE", "SOURCE", "ACCESS", "TEXT", "TAGS"]
    print(table(["SCORE", *head] if ranked else head, rows))
    if result["next_offset"] is not None:
        print(f"… {result['total']} in all; next page: --offset {result['next_offset']}")
    return 0


def _locate(name: str) -> tuple[Path, str | None]:
    path = Path(name).expanduser()
    return path, "dir" if path.is_dir() else "file" if path.is_file() else None


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
