"""Undo copies: what a path was before a tool call changed it, and rolling an agent's changes back.

File tools call `ctx.services["undo"].keep(path)` before every write and delete (the
`UndoKeeper` protocol of app.kernel.tools.base). The invoker hands each call a keeper bound to
its pid and idempotency key; it keeps, once per call and path, a copy of the file (or folder, or
symlink) under `<data>/undo/<pid>/`, or a marker that the path did not exist yet (with the
folders a write there will create). `UndoStore.undo(pid)` goes through an agent's entries
newest first and puts each path back as it was: content, mode and symlinks restored, created
files and folders removed. A path is only restored from what the kernel itself kept.

A copy is kept before the change happens: if keeping fails (a full disk, a file over the size
limit), `keep` raises ToolError and the tool does not make the change.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.kernel.store.tool_tables import UndoRow
from app.kernel.tools.base import ToolError

MAX_COPY_BYTES = 512 * 2**20  # a change to anything larger is refused: it could not be undone


@dataclass(slots=True)
class UndoReport:
    pid: int
    changes: int = 0  # entries rolled back
    restored: list[str] = field(default_factory=list)  # paths put back as they were
    deleted: list[str] = field(default_factory=list)  # paths the agent created, removed
    failed: list[dict[str, str]] = field(default_factory=list)  # {"path", "error"}
    kept: list[str] = field(default_factory=list)  # created folders left: something else is in them
    left: int = 0  # entries not rolled back (after a failure: a second undo goes on from there)

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "changes": self.changes, "restored": self.restored, "deleted": self.deleted,
                "failed": self.failed, "kept": self.kept, "left": self.left}


class CallUndo:
    """The undo keeper of one tool call (`ctx.services["undo"]`)."""

    def __init__(self, store: UndoStore, pid: int | None, key: str) -> None:
        self.store, self.pid, self.key = store, pid, key
        self.kept: list[str] = []

    async def keep(self, path: Path) -> None:
        if await self.store.keep(self.pid, self.key, Path(path)):
            self.kept.append(str(path))


class UndoStore:
    def __init__(self, root: Path, *, max_copy_bytes: int = MAX_COPY_BYTES) -> None:
        self.root = root
        self.max_copy_bytes = max_copy_bytes
        self._locks: dict[int | None, asyncio.Lock] = {}

    def keeper(self, pid: int | None, key: str) -> CallUndo:
        return CallUndo(self, pid, key)

    def _lock(self, pid: int | None) -> asyncio.Lock:
        return self._locks.setdefault(pid, asyncio.Lock())

    async def keep(self, pid: int | None, key: str, path: Path) -> bool:
        """Keep what `path` is now, unless this call kept it already (a replayed call keeps the
        copy made before its first run). True if a new entry was written."""
        if not path.is_absolute():
            raise ToolError(f"undo: {path} is not an absolute path")  # a bug in the tool, not the model's
        target = str(path)
        async with self._lock(pid):
            if UndoRow.get_or_none((UndoRow.key == key) & (UndoRow.path == target)) is not None:
                return False
            entry = await asyncio.to_thread(self._snapshot, pid, target)
            UndoRow.create(pid=pid, key=key, path=target, at=time.time(), **entry)
            return True

    def _snapshot(self, pid: int | None, target: str) -> dict[str, Any]:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return {"kind": "missing", "created_dirs": _missing_parents(target)}
        except OSError as e:
            raise ToolError(f"cannot keep an undo copy of {target}: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            return {"kind": "symlink", "link": os.readlink(target)}
        folder = self.root / (str(pid) if pid is not None else "calls")
        name = uuid.uuid4().hex
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if stat.S_ISDIR(st.st_mode):
                size = _tree_size(target)
                self._check_size(target, size)
                shutil.copytree(target, folder / name, symlinks=True)
                return {"kind": "dir", "copy": name, "mode": stat.S_IMODE(st.st_mode)}
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{target} is not a regular file, a folder or a symlink: it cannot be undone, "
                                "so it is not changed")
            self._check_size(target, st.st_size)
            shutil.copy2(target, folder / name)
            return {"kind": "file", "copy": name, "mode": stat.S_IMODE(st.st_mode)}
        except OSError as e:
            shutil.rmtree(folder / name, ignore_errors=True)
            raise ToolError(f"cannot keep an undo copy of {target} ({e.strerror or e}), so it is not changed") from None

    def _check_size(self, target: str, size: int) -> None:
        if size > self.max_copy_bytes:
            raise ToolError(f"{target} is {size / 2**20:.0f} MB, over the {self.max_copy_bytes / 2**20:.0f} MB "
                            "an undo copy may hold: it is not changed")

    # -- rolling back --------------------------------------------------------------------------
    def entries(self, pid: int, *, restored: bool = False) -> list[dict[str, Any]]:
        """An agent's changes not rolled back yet, newest first."""
        query = UndoRow.select().where((UndoRow.pid == pid) & (UndoRow.restored == restored))
        return [{"id": r.id, "key": r.key, "path": r.path, "kind": r.kind, "at": r.at}
                for r in query.order_by(UndoRow.id.desc())]

    async def undo(self, pid: int) -> UndoReport:
        """Roll back every change of agent `pid` not rolled back yet, newest first."""
        async with self._lock(pid):
            rows = list(UndoRow.select().where((UndoRow.pid == pid) & (UndoRow.restored == False))  # noqa: E712
                        .order_by(UndoRow.id.desc()))
            report, done = await asyncio.to_thread(self._undo, pid, rows)
            if done:  # on this thread: the database is written from the loop's connection only
                UndoRow.update(restored=True).where(UndoRow.id.in_(done)).execute()
            return report

    def _undo(self, pid: int, rows: list[UndoRow]) -> tuple[UndoReport, list[int]]:
        report = UndoReport(pid)
        done: list[int] = []
        final: dict[str, str] = {}  # path → what happened to it last (its oldest entry)
        folder = self.root / str(pid)
        for row in rows:
            try:
                final[row.path] = self._restore(row, folder, report)
            except OSError as e:
                # Stop here: older entries are only right on top of this one. A second undo,
                # once the cause is fixed, goes on from this entry.
                report.failed.append({"path": row.path, "error": e.strerror or str(e)})
                break
            done.append(row.id)
            report.changes += 1
            if row.copy:
                shutil.rmtree(folder / row.copy, ignore_errors=True) if row.kind == "dir" else \
                    (folder / row.copy).unlink(missing_ok=True)
        failed = {f["path"] for f in report.failed}
        for path, action in final.items():
            if path not in failed:
                (report.deleted if action == "deleted" else report.restored).append(path)
        report.kept = sorted(set(report.kept))
        report.left = len(rows) - report.changes
        return report, done

    def _restore(self, row: UndoRow, folder: Path, report: UndoReport) -> str:
        path = row.path
        if row.kind == "missing":
            _remove(path)
            for created in reversed(row.created_dirs or []):  # deepest first
                try:
                    os.rmdir(created)
                except FileNotFoundError:
                    pass
                except OSError:
                    report.kept.append(created)  # something else is in it now: left alone
            return "deleted"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if row.kind == "symlink":
            _remove(path)
            os.symlink(row.link, path)
        elif row.kind == "dir":
            _remove(path)
            shutil.copytree(folder / row.copy, path, symlinks=True)
            os.chmod(path, row.mode)
        else:
            # Written beside it and moved into place: the file is whole at every moment.
            temp = f"{path}.byenatos-undo-{uuid.uuid4().hex[:8]}"
            shutil.copy2(folder / row.copy, temp)
            os.chmod(temp, row.mode)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            os.replace(temp, path)
        return "restored"


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _missing_parents(target: str) -> list[str]:
    """The folders above `target` that do not exist yet, the outermost first."""
    missing: list[str] = []
    parent = os.path.dirname(target)
    while parent and not os.path.lexists(parent):
        missing.append(parent)
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    return list(reversed(missing))


def _tree_size(target: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(target):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
