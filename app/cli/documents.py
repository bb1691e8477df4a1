"""`byenatos docs add FOLDER | list | remove FOLDER | status | scan | search WORDS`: the user's
documents as part of their memory.

When ByenatOS runs (`byenatos serve` or the desktop app), every command goes to its
/api/documents with the user's admin token, and `add` returns at once: the running kernel
indexes the folder and watches it (`docs status` shows how far it is). With nothing running,
the command starts the kernel here: `add` and `scan` then index before returning, showing
their progress on stderr; the next start of ByenatOS watches the folders.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from app.cli.output import table

# httpx and the kernel are imported inside the functions: building the argument parser happens
# on every `byenatos …` start and must stay cheap.

ACCESS = ("private", "shared", "public")


def add_parser(sub: argparse._SubParsersAction, parser_class: type) -> None:  # type: ignore[type-arg]
    d = sub.add_parser("docs", help="your documents in memory: add folders, index status, search by meaning")
    dsub = d.add_subparsers(dest="docs_command", metavar="ACTION", required=True, parser_class=parser_class)
    a = dsub.add_parser("add", help="index a folder (PDF, Word, Markdown, text, code) and keep it in step")
    a.add_argument("folder")
    a.add_argument("--access", choices=ACCESS, default="private",
                   help="private (default: you and your agents), shared (also apps with hinata:read), public")
    ls = dsub.add_parser("list", help="the indexed folders")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    r = dsub.add_parser("remove", help="stop indexing a folder and forget its passages (files are untouched)")
    r.add_argument("folder")
    st = dsub.add_parser("status", help="what the index is doing, and the files it skipped and why")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sc = dsub.add_parser("scan", help="index again now (one folder or all)")
    sc.add_argument("folder", nargs="?")
    s = dsub.add_parser("search", help="find passages of your documents by meaning")
    s.add_argument("query", nargs="+")
    s.add_argument("-k", type=int, default=8, help="how many passages (1-50, default 8)")
    s.add_argument("--json", action="store_true", help="machine-readable output")


# -- reaching the index ----------------------------------------------------------------------
class _Remote:
    """/api/documents of the running ByenatOS."""

    local = False

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    async def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        import httpx

        from app.kernel.errors import ByenatosError, from_http_status

        try:
            async with httpx.AsyncClient(timeout=None, trust_env=False) as c:
                r = await c.request(method, f"{self.base}{path}", json=body, params=params,
                                    headers={"Authorization": f"Bearer {self.token}"})
        except httpx.HTTPError as e:
            raise ByenatosError(f"the running ByenatOS did not answer: {e}") from None
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:300] or f"HTTP {r.status_code}"
            raise from_http_status(r.status_code, message)
        return r.json()

    async def add(self, folder: str, access: str) -> dict[str, Any]:
        return await self.call("POST", "/api/documents/folders", {"path": folder, "access": access})

    async def folders(self) -> list[dict[str, Any]]:
        return (await self.call("GET", "/api/documents/folders"))["data"]

    async def remove(self, folder: str) -> dict[str, Any]:
        return await self.call("DELETE", "/api/documents/folders", params={"path": folder})

    async def status(self) -> dict[str, Any]:
        return await self.call("GET", "/api/documents/status")

    async def scan(self, folder: str | None) -> list[dict[str, Any]]:
        return (await self.call("POST", "/api/documents/scan", {"path": folder} if folder else {}))["data"]

    async def search(self, query: str, k: int) -> list[dict[str, Any]]:
        return (await self.call("GET", "/api/documents/search", params={"q": query, "k": k}))["data"]


class _Local:
    """The index of a kernel started in this process; long jobs show progress on stderr."""

    local = True

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.docs = kernel.documents

    async def _progress(self, work: Any) -> Any:
        import asyncio

        from app.kernel.documents.events import DocumentsProgress

        sub = self.kernel.events.subscribe(accepts=lambda e: isinstance(e, DocumentsProgress))
        task = asyncio.ensure_future(work)
        shown = False
        try:
            while not task.done():
                getter = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                e = getter.result()
                if e.files_total:
                    eta = f", about {e.eta_s:.0f} s left" if e.eta_s else ""
                    print(f"\rindexing {e.files_done:,}/{e.files_total:,} files{eta}   ", end="", file=sys.stderr)
                    shown = True
            return task.result()
        finally:
            sub.close()
            if shown:
                print(file=sys.stderr)

    async def add(self, folder: str, access: str) -> dict[str, Any]:
        await self.kernel.personal.ready()
        return await self._progress(self.docs.add_folder(folder, access, wait=True))

    async def folders(self) -> list[dict[str, Any]]:
        return self.docs.folders()

    async def remove(self, folder: str) -> dict[str, Any]:
        await self.kernel.personal.ready()
        return await self.docs.remove_folder(folder)

    async def status(self) -> dict[str, Any]:
        return await self.docs.status()

    async def scan(self, folder: str | None) -> list[dict[str, Any]]:
        await self.kernel.personal.ready()
        return await self._progress(self.docs.scan(folder))

    async def search(self, query: str, k: int) -> list[dict[str, Any]]:
        return await self.docs.search(query, k)


def _admin_token(paths: Any) -> str:
    from app.kernel.security.apps import AppRegistry
    from app.kernel.security.secrets import SecretStore
    from app.kernel.store import open_database

    db = open_database(paths.database)
    try:
        return AppRegistry(SecretStore(paths.secrets_file)).admin_token()
    finally:
        db.close()


@contextlib.asynccontextmanager
async def connect() -> AsyncIterator[_Remote | _Local]:
    import asyncio

    from app.kernel.config import Paths, load_settings
    from app.kernel.runtime_file import locate

    paths = Paths.default()
    found = await locate(paths, load_settings(paths).gateway)
    if found is not None:
        yield _Remote(found[0], await asyncio.to_thread(_admin_token, paths))
        return
    from app.kernel.kernel import Kernel

    async with Kernel(paths) as kernel:
        yield _Local(kernel)


# -- the commands ------------------------------------------------------------------------------
def _absolute(folder: str) -> str:
    return str(Path(folder).expanduser().resolve())


async def documents(args: argparse.Namespace) -> int:
    action = args.docs_command
    async with connect() as index:
        if action == "add":
            out = await index.add(_absolute(args.folder), args.access)
            verb = {"added": "added", "updated": "updated", "unchanged": "already indexed:"}[out["status"]]
            report = out.get("report")
            if report is None:
                print(f"{verb} {out['folder']} ({out['access']}): ByenatOS is indexing it; "
                      "`byenatos docs status` shows how far it is")
            else:
                print(f"{verb} {out['folder']} ({out['access']}): {_report_line(report)}")
                if report["skipped"]:
                    print("`byenatos docs status` says why files were skipped")
            return 0
        if action == "list":
            folders = await index.folders()
            if args.json:
                print(json.dumps(folders, indent=2, ensure_ascii=False))
            elif not folders:
                print("no folders yet: `byenatos docs add FOLDER` indexes one")
            else:
                print(table(["FOLDER", "ACCESS", "FILES", "PASSAGES", "PAGES", "SKIPPED"],
                            [[f["path"] + (f"  ({f['problem']})" if f.get("problem") else ""), f["access"],
                              f["files"], f["chunks"], f["pages"], f["skipped"]] for f in folders]))
            return 0
        if action == "remove":
            out = await index.remove(_absolute(args.folder))
            print(f"removed {out['folder']}: forgot the passages of {out['forgotten_files']} files "
                  "(the files themselves are untouched)")
            return 0
        if action == "status":
            return _print_status(await index.status(), args.json)
        if action == "scan":
            reports = await index.scan(_absolute(args.folder) if args.folder else None)
            for r in reports:
                print(f"{r['folder']}: {_report_line(r)}" + (f" — {r['problem']}" if r.get("problem") else ""))
            if not reports:
                print("no folders yet: `byenatos docs add FOLDER` indexes one")
            return 0
        hits = await index.search(" ".join(args.query), args.k)
        if args.json:
            print(json.dumps(hits, indent=2, ensure_ascii=False))
        elif not hits:
            print("no passages found")
        for n, h in enumerate(hits if not args.json else [], 1):
            text = " ".join((h.get("text") or "").split())
            print(f"{n}. {h['citation']}  ({h['score']:.2f})")
            print(f"   {h['address']}")
            print(f"   {text[:200] + '…' if len(text) > 200 else text}")
        return 0


def _report_line(r: dict[str, Any]) -> str:
    parts = [f"{r['indexed']} files indexed ({r['pages']} pages, {r['chunks']} passages)"]
    for key, word in (("unchanged", "unchanged"), ("skipped", "skipped"), ("removed", "removed")):
        if r.get(key):
            parts.append(f"{r[key]} {word}")
    return ", ".join(parts)


def _print_status(s: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(s, indent=2, ensure_ascii=False))
        return 0
    current = s.get("current")
    if current:
        eta = f", about {current['eta_s']:.0f} s left" if current.get("eta_s") else ""
        print(f"indexing {current['folder'] or 'changes'}: {current['files_done']:,}/{current['files_total']:,} "
              f"files{eta}")
    else:
        print("idle" + (" — watching for changes" if s.get("watching") else ""))
    if s.get("watch_problem"):
        print(s["watch_problem"])
    print(f"{len(s['folders'])} folders, {s['files']:,} files, {s['pages']:,} pages, {s['chunks']:,} passages")
    for f in s["folders"]:
        line = f"  {f['path']} ({f['access']}): {f['files']:,} files, {f['skipped']} skipped"
        print(line + (f" — {f['problem']}" if f.get("problem") else ""))
    if s["skipped"]:
        print(f"skipped or partly indexed ({s['skipped_total']}):")
        for k in s["skipped"]:
            print(f"  {k['path']}: {k['reason']}")
    return 0
