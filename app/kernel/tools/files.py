"""File tools: list, read, search, write and delete, in the caller's working folder and in the
folders the user allowed (settings `files.allowed_folders`, and `files.app_folders` per app).

A relative path is taken in the working folder; an absolute one (or `~/…`) must lie in an
allowed folder. Whatever the spelling, the path is resolved first (`..` and symlinks followed)
and refused when it lands outside those folders, or inside ByenatOS's own folders (its settings,
secrets and database; other agents' working folders): an agent must never grant itself more by
editing the settings. Writes and deletes hand the file to the undo keeper first
(`ctx.services["undo"]`, an `UndoKeeper`), so every change can be rolled back.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, UndoKeeper, required_str

MAX_READ = 200_000  # characters one read returns (`offset` pages on)
MAX_WRITE = 1_000_000  # characters one write takes
MAX_LIST = 500  # entries one listing returns
SEARCH_FILES = 20_000  # files one search looks at, at most
SEARCH_FILE_BYTES = 2_000_000  # a bigger file is searched by name only
SEARCH_SECONDS = 10.0  # a search stops (with what it found) after this long
MAX_RESULTS = 200
LINE_CHARS = 300  # a matching line is cut to this


@dataclass(frozen=True, slots=True)
class Roots:
    """Where one caller may go: its working folder, the allowed folders, and what stays shut."""

    workdir: Path
    allowed: tuple[Path, ...]
    closed: tuple[Path, ...]  # ByenatOS's own folders (the working folder may sit inside one)

    def inside(self, path: Path) -> bool:
        if _under(path, self.workdir):
            return True
        if any(_under(path, c) for c in self.closed):
            return False
        return any(_under(path, a) for a in self.allowed)

    def describe(self) -> str:
        folders = ", ".join(str(a) for a in self.allowed)
        return "this agent's working folder" + (f" and the folders the user allowed ({folders})" if folders
                                                else " (the user has allowed no other folders)")

    def show(self, path: Path) -> str:
        """The path as the caller should name it again: relative in the working folder."""
        if _under(path, self.workdir):
            rel = path.relative_to(self.workdir).as_posix()
            return rel or "."
        return str(path)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def roots(ctx: ToolContext) -> Roots:
    settings = ctx.services.get("settings")
    allowed = settings.files.folders_for(ctx.app) if settings is not None else []
    paths = ctx.services.get("paths")
    closed = [] if paths is None else [paths.config_dir, paths.data_dir, paths.run_dir]
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    return Roots(ctx.workdir.resolve(), tuple(_real(Path(a)) for a in allowed),
                 tuple(_real(Path(c)) for c in closed))


def _real(path: Path) -> Path:
    return path.expanduser().resolve()


def resolve(ctx: ToolContext, given: str, where: Roots | None = None) -> tuple[Path, Roots]:
    """The real path `given` names, if the caller may use it (else ToolError)."""
    if "\x00" in given:
        raise ToolError("a path cannot contain a NUL character")
    where = where or roots(ctx)
    raw = Path(given).expanduser()
    path = (raw if raw.is_absolute() else where.workdir / raw).resolve()
    if not where.inside(path):
        raise ToolError(f"{given!r} is outside {where.describe()}")
    return path, where


async def _locate(ctx: ToolContext, given: str, want: str) -> tuple[Path, Roots]:
    """`resolve` and the check the tool needs (`want`: folder, file, writable, deletable), off
    the event loop: resolving touches the disk, which may be a slow or network mount."""

    def locate() -> tuple[Path, Roots]:
        path, where = resolve(ctx, given)
        if want == "folder" and not path.is_dir():
            raise ToolError(f"{given!r} is not a folder")
        if want == "file" and not path.is_file():
            raise ToolError(f"no file {given!r}" + (" (it is a folder)" if path.is_dir() else ""))
        if want == "writable" and path.is_dir():
            raise ToolError(f"{given!r} is a folder")
        if want == "deletable":
            if path == where.workdir or path in where.allowed:
                raise ToolError(f"{given!r} is a root folder; it cannot be deleted")
            if path.is_dir():
                raise ToolError(f"{given!r} is a folder; file_delete deletes files only")
            if not path.exists():
                raise ToolError(f"no file {given!r}")
        return path, where

    return await asyncio.to_thread(locate)


def _path_arg(args: dict[str, Any], name: str = "path", default: str | None = None) -> str:
    if default is not None and args.get(name) in (None, ""):
        return default
    return required_str(args, name, max_len=4_096)


def _int_arg(args: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ToolError(f"argument {name!r}: a whole number from {low} to {high}")
    return value


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


async def file_list(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    given = _path_arg(args, default=".")
    folder, where = await _locate(ctx, given, "folder")

    def listing() -> dict[str, Any]:
        entries = []
        names = sorted(os.scandir(folder), key=lambda e: e.name)
        for entry in names[:MAX_LIST]:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            entries.append({"name": entry.name, "folder": stat.S_ISDIR(info.st_mode),
                            "bytes": info.st_size if stat.S_ISREG(info.st_mode) else None,
                            "modified": _when(info.st_mtime), "link": stat.S_ISLNK(info.st_mode)})
        return {"path": where.show(folder), "entries": entries, "truncated": len(names) > MAX_LIST}

    return await asyncio.to_thread(listing)


async def file_read(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    given = _path_arg(args)
    offset = _int_arg(args, "offset", 0, 0, 10**12)
    path, where = await _locate(ctx, given, "file")

    def read() -> str:
        with open(path, "rb") as f:
            head = f.read(8_192)
            if b"\x00" in head:
                raise ToolError(f"{given!r} is a binary file, not text")
            return (head + f.read()).decode("utf-8", errors="replace")

    text = await asyncio.to_thread(read)
    part = text[offset:offset + MAX_READ]
    end = offset + len(part)
    return {"path": where.show(path), "content": part, "offset": offset, "chars": len(text),
            "truncated": end < len(text), **({"next_offset": end} if end < len(text) else {})}


async def file_search(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """Files under a folder whose name matches a glob and/or whose text contains a string or a
    regular expression, like `find -name` and `grep -rn`; bounded in files, bytes and time."""
    given = _path_arg(args, default=".")
    name = args.get("name")
    content = args.get("content")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 500):
        raise ToolError("argument 'name': a file name pattern such as '*.md' (at most 500 characters)")
    if content is not None and (not isinstance(content, str) or not content or len(content) > 1_000):
        raise ToolError("argument 'content': the text to look for (1 to 1000 characters)")
    if name is None and content is None:
        raise ToolError("give 'name' (a pattern such as '*.md'), 'content' (text to find), or both")
    regex = args.get("regex", False)
    if not isinstance(regex, bool):
        raise ToolError("argument 'regex': true or false")
    limit = _int_arg(args, "max_results", 50, 1, MAX_RESULTS)
    matcher: re.Pattern[str] | None = None
    if content is not None:
        try:
            matcher = re.compile(content if regex else re.escape(content), re.IGNORECASE)
        except re.error as e:
            raise ToolError(f"argument 'content': not a valid regular expression ({e})") from None
    folder, where = await _locate(ctx, given, "folder")
    return await asyncio.to_thread(_search, folder, where, name, matcher, limit)


def _search(folder: Path, where: Roots, name: str | None, matcher: re.Pattern[str] | None,
            limit: int) -> dict[str, Any]:
    deadline = time.monotonic() + SEARCH_SECONDS
    matches: list[dict[str, Any]] = []
    seen = 0
    stopped = ""
    # os.walk does not follow symlinked folders; symlinked files are checked like any path.
    for top, dirs, files in os.walk(folder):
        here = Path(top)
        dirs[:] = sorted(d for d in dirs if where.inside(here / d))
        for fname in sorted(files):
            if seen >= SEARCH_FILES:
                stopped = f"looked at {SEARCH_FILES} files"
                break
            if time.monotonic() > deadline:
                stopped = f"searched for {SEARCH_SECONDS:.0f} s"
                break
            if name is not None and not fnmatch.fnmatch(fname.lower(), name.lower()):
                continue
            path = here / fname
            real = path.resolve()
            if not where.inside(real) or not real.is_file():
                continue
            seen += 1
            if matcher is None:
                matches.append({"path": where.show(real)})
            else:
                matches.extend(_grep(real, where.show(real), matcher, limit - len(matches)))
            if len(matches) >= limit:
                stopped = f"found {limit} matches"
                break
        if stopped:
            break
    return {"path": where.show(folder), "matches": matches[:limit], "files_searched": seen,
            "truncated": bool(stopped), **({"stopped": stopped} if stopped else {})}


def _grep(path: Path, shown: str, matcher: re.Pattern[str], room: int) -> list[dict[str, Any]]:
    try:
        if path.stat().st_size > SEARCH_FILE_BYTES:
            return []
        data = path.read_bytes()
    except OSError:
        return []
    if b"\x00" in data[:8_192]:
        return []  # binary
    out = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if matcher.search(line):
            out.append({"path": shown, "line": number, "text": line.strip()[:LINE_CHARS]})
            if len(out) >= room:
                break
    return out


async def _keep(ctx: ToolContext, path: Path) -> None:
    undo: UndoKeeper | None = ctx.services.get("undo")
    if undo is not None:
        await undo.keep(path)


async def file_write(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    given = _path_arg(args)
    content = args.get("content")
    if not isinstance(content, str) or len(content) > MAX_WRITE:
        raise ToolError(f"argument 'content': a string of at most {MAX_WRITE} characters")
    mode = args.get("mode", "overwrite")
    if mode not in ("overwrite", "append"):
        raise ToolError("argument 'mode': overwrite or append")
    path, where = await _locate(ctx, given, "writable")
    await _keep(ctx, path)

    def write() -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode()
        # O_NOFOLLOW: a symlink put in place after the check above is not followed out.
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | (
            os.O_APPEND if mode == "append" else os.O_TRUNC)
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return len(data)

    written = await asyncio.to_thread(write)
    return {"path": where.show(path), "bytes": written, "mode": mode}


async def file_delete(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    given = _path_arg(args)
    path, where = await _locate(ctx, given, "deletable")
    await _keep(ctx, path)
    await asyncio.to_thread(path.unlink)
    return {"path": where.show(path), "deleted": True}


_STR = {"type": "string"}
_PATH = {"type": "string", "description": "relative to the working folder, or absolute inside an allowed folder"}


def tools() -> list[Tool]:
    return [
        Tool("file_list", "List a folder: this agent's working folder (the default) or a folder inside it or "
             "inside a folder the user allowed. Entries with name, size and modification time.",
             {"type": "object", "properties": {"path": _PATH}, "additionalProperties": False}, file_list),
        Tool("file_read", "Read a text file (at most 200,000 characters at a time; `offset` reads on).",
             {"type": "object", "properties": {"path": _PATH, "offset": {"type": "integer", "minimum": 0}},
              "required": ["path"], "additionalProperties": False}, file_read),
        Tool("file_search", "Find files under a folder by name (a pattern such as '*.md') and/or by what they "
             "contain (text, or a regular expression with regex=true), like find and grep. Returns the "
             "matching files, and for a content search the matching lines with their numbers.",
             {"type": "object", "properties": {
                 "path": _PATH, "name": _STR, "content": _STR, "regex": {"type": "boolean"},
                 "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS}},
              "additionalProperties": False}, file_search),
        Tool("file_write", "Write (or append to) a text file. The previous content is kept so the user can undo it.",
             {"type": "object", "properties": {"path": _PATH, "content": _STR,
                                               "mode": {"type": "string", "enum": ["overwrite", "append"]}},
              "required": ["path", "content"], "additionalProperties": False},
             file_write, risk=Risk.WRITE),
        Tool("file_delete", "Delete a file (not a folder). A copy is kept so the user can undo it.",
             {"type": "object", "properties": {"path": _PATH}, "required": ["path"], "additionalProperties": False},
             file_delete, risk=Risk.WRITE),
    ]
