"""What extractors produce: located pieces of text, or the reason a file is skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Unit = Literal["page", "line", "para"]


class Skip(Exception):
    """This file is not indexed, and why (`code`: a word the report groups by)."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Piece:
    """Text at a place in its file: pages, lines or paragraphs `start`..`end` (1-based)."""

    text: str
    start: int
    end: int
    heading: str = ""  # the section it is under, where the format says


@dataclass
class Extracted:
    unit: Unit
    pieces: list[Piece]
    pages: int  # pages (PDF, Word when it knows where they break), else 0
    merge: bool = True  # small neighbouring pieces may share a passage (never for PDF pages)
    notes: list[str] = field(default_factory=list)  # what was left out (pages that failed…)


def why(e: BaseException) -> str:
    """An exception in a few words for the skip report."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__
