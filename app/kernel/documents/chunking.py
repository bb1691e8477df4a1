"""Located pieces → passages of about a thousand characters, each knowing where it is.

About a thousand characters because the embedding model reads 256 tokens of a passage and
the PSP shows a few hundred characters of it: a longer passage would be found by words its
vector never saw. Neighbouring small pieces share a passage (never across a PDF page, nor
across a heading: a passage belongs to one place); a long piece is cut at line, paragraph or
sentence ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.kernel.documents.pieces import Extracted, Piece, Unit

TARGET = 1_000
MAX = 1_600
MAX_CHUNKS = 20_000  # passages per file; the rest of a bigger file is left out (and reported)
_SENTENCE = re.compile("(?<=[.!?\u3002\uff01\uff1f])\\s+")  # also Chinese and Japanese sentence ends


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    start: int
    end: int
    heading: str = ""


def chunks(extracted: Extracted) -> Iterator[Chunk]:
    current: list[Piece] = []
    size = 0
    for piece in extracted.pieces:
        parts = [piece] if len(piece.text) <= MAX else list(_split(piece, extracted.unit))
        for part in parts:
            if current and (
                not extracted.merge
                or size + len(part.text) > TARGET
                or part.heading != current[-1].heading
            ):
                yield _join(current)
                current, size = [], 0
            current.append(part)
            size += len(part.text) + 1
    if current:
        yield _join(current)


def _join(pieces: list[Piece]) -> Chunk:
    return Chunk("\n".join(p.text for p in pieces), pieces[0].start, pieces[-1].end, pieces[0].heading)


def _split(piece: Piece, unit: Unit) -> Iterator[Piece]:
    """A piece too long for one passage, in parts; lines keep their own line numbers."""
    if unit == "line":
        number = piece.start
        part: list[str] = []
        first, size = number, 0
        for line in piece.text.split("\n"):
            if part and size + len(line) > TARGET:
                yield Piece("\n".join(part), first, number - 1, piece.heading)
                part, size = [], 0
            if not part:
                first = number
            if len(line) > MAX:  # one huge line (minified code, a CSV dump): by characters
                for i in range(0, len(line), TARGET):
                    yield Piece(line[i : i + TARGET], number, number, piece.heading)
            else:
                part.append(line)
                size += len(line) + 1
            number += 1
        if part:
            yield Piece("\n".join(part), first, number - 1, piece.heading)
        return
    # A page or a paragraph: cut at paragraph, then sentence ends, then anywhere.
    buffer = ""
    for segment in _segments(piece.text):
        if buffer and len(buffer) + len(segment) + 1 > TARGET:
            yield Piece(buffer, piece.start, piece.end, piece.heading)
            buffer = ""
        buffer = f"{buffer} {segment}" if buffer else segment
    if buffer:
        yield Piece(buffer, piece.start, piece.end, piece.heading)


def _segments(text: str) -> Iterator[str]:
    for paragraph in re.split(r"\n\s*\n|\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= TARGET:
            yield paragraph
            continue
        for sentence in _SENTENCE.split(paragraph):
            for i in range(0, len(sentence), TARGET):
                yield sentence[i : i + TARGET]


# -- where a passage is ------------------------------------------------------------------------
def anchor(unit: Unit, start: int, end: int) -> str:
    """The URL fragment viewers understand: `#page=3` (PDF viewers), `#L10-L42` (code hosts,
    editors), `#para=3-10` for a Word file without page information."""
    if unit == "page":
        return f"#page={start}"
    if unit == "line":
        return f"#L{start}" if start == end else f"#L{start}-L{end}"
    return f"#para={start}" if start == end else f"#para={start}-{end}"


def place(unit: Unit, start: int, end: int) -> str:
    """The same in words: "page 3", "lines 10-42", "paragraphs 3-10"."""
    word = {"page": "page", "line": "line", "para": "paragraph"}[unit]
    return f"{word} {start}" if start == end else f"{word}s {start}-{end}"


def address(path: Path, unit: Unit, start: int, end: int) -> str:
    return path.as_uri() + anchor(unit, start, end)
