"""Importers a user wants on day one: a folder of Markdown notes and a JSONL file of records.

Markdown (Obsidian-style): one record per note; the title is the front matter `title`, the
first `# heading` or the file name; tags come from front matter (`tags: [a, b]`, a YAML list,
or `a, b`) and inline `#tags`; `date`/`created` sets the time, else the file's mtime. A
re-import reads only files whose mtime moved and stores only those whose content changed;
notes deleted from the folder are forgotten.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from app.kernel.personal.hinata import MAX_HIGHLIGHT, MAX_NOTE

_INLINE_TAG = re.compile(r"(?<![\w&/#])#([A-Za-z][\w/-]{0,63})")
_HEADING = re.compile(r"^#\s+(.+)$", re.MULTILINE)
SKIP_DIRS = {".obsidian", ".git", ".trash", "node_modules", ".venv"}


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0  # Markdown: files not read again because their mtime did not move
    removed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, results: list[dict[str, str]]) -> None:
        for r in results:
            setattr(self, r["status"], getattr(self, r["status"]) + 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "removed": self.removed,
            "errors": self.errors[:100],
            "error_count": len(self.errors),
        }


def jsonl_lines(text: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON or the parse error as an Exception) for each non-blank line."""
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            yield n, orjson.loads(line)
        except orjson.JSONDecodeError as e:
            yield n, ValueError(f"not valid JSON ({e})")


def parse_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """A small YAML subset (what note apps write): `key: value`, `key: [a, b]`, and `- item` lists."""
    if not text.startswith("---"):
        return {}, text
    end = text.find("\n---", 3)
    if end < 0:
        return {}, text
    block, body = text[3:end], text[end + 4 :]
    body = body.split("\n", 1)[1] if "\n" in body else ""
    meta: dict[str, Any] = {}
    current: str | None = None
    for raw in block.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("- ") and current is not None:
            meta.setdefault(current, [])
            if isinstance(meta[current], list):
                meta[current].append(_scalar(line.lstrip()[2:]))
            continue
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            current = key.strip().lower()
            value = value.strip()
            if not value:
                meta[current] = []
            elif value.startswith("[") and value.endswith("]"):
                meta[current] = [_scalar(v) for v in value[1:-1].split(",") if v.strip()]
            else:
                meta[current] = _scalar(value)
    return meta, body


def _scalar(v: str) -> str:
    return v.strip().strip("'\"")


def _as_list(v: Any) -> list[str]:
    if isinstance(v, list):
        return [str(x).strip().lstrip("#") for x in v if str(x).strip()]
    if isinstance(v, str) and v.strip():
        return [x.strip().lstrip("#") for x in re.split(r"[,\s]+", v) if x.strip()]
    return []


def _time(meta: dict[str, Any], mtime: float) -> str:
    for key in ("date", "created", "created_at"):
        v = meta.get(key)
        if isinstance(v, str) and v:
            try:
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
                return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()
            except ValueError:
                pass
    return datetime.fromtimestamp(mtime, UTC).isoformat()


def markdown_record(path: Path, root: Path, text: str, mtime: float) -> dict[str, Any]:
    """One note as a HiNATA record dict (validated by the caller like any other record)."""
    meta, body = parse_front_matter(text)
    body = body.strip()
    title = str(meta.get("title") or "").strip()
    if not title:
        m = _HEADING.search(body)
        title = m.group(1).strip() if m else path.stem.replace("-", " ").replace("_", " ")
    tags = list(
        dict.fromkeys(_as_list(meta.get("tags")) + _as_list(meta.get("tag")) + _INLINE_TAG.findall(body))
    )[:32]
    tags = [t[:64] for t in tags]
    access = meta.get("access") if meta.get("access") in ("private", "shared", "public") else "private"
    rel = path.relative_to(root).as_posix()
    note = body if len(body) <= MAX_NOTE else body[: MAX_NOTE - 1] + "…"
    rec: dict[str, Any] = {
        "id": "md:" + hashlib.sha1(str(path).encode()).hexdigest()[:20],
        "timestamp": _time(meta, mtime),
        "highlight": title[:MAX_HIGHLIGHT],
        "note": note,
        "address": str(path),
        "tag": tags,
        "access": access,
        "metadata": {
            "importer": "markdown",
            "path": rel,
            **({"truncated": True} if note is not body else {}),
        },
    }
    return rec


def scan_markdown(root: Path) -> Iterator[tuple[Path, float]]:
    """Every .md file under `root` (hidden and tool folders skipped), with its mtime."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
        for name in filenames:
            if name.lower().endswith((".md", ".markdown")):
                p = Path(dirpath) / name
                try:
                    yield p, p.stat().st_mtime
                except OSError:
                    continue


def file_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
