"""What the document index tells the UI, `/api/events` and tests."""

from __future__ import annotations

from dataclasses import dataclass

from app.kernel.events import Event


@dataclass(frozen=True, slots=True)
class DocumentsProgress(Event):
    """A scan of a folder is under way (published about twice a second, and at its start)."""

    folder: str
    files_total: int
    files_done: int
    indexed: int
    unchanged: int
    skipped: int
    removed: int
    pages: int
    current: str = ""
    eta_s: float | None = None


@dataclass(frozen=True, slots=True)
class DocumentsIndexed(Event):
    """A scan, a batch of watched changes or a folder's removal is done."""

    folder: str | None
    trigger: str  # "scan" | "watch" | "remove"
    indexed: int
    unchanged: int
    skipped: int
    removed: int
    pages: int
    chunks: int
    seconds: float
    paths: tuple[str, ...] = ()  # the files it indexed, skipped or removed (the first 50)
    problem: str = ""  # a folder that is missing (an unplugged disk): nothing was removed
