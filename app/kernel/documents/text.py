"""Plain text, Markdown and source code: decoded carefully, cut into blocks of lines.

A block is a run of non-blank lines (a paragraph, a function); in Markdown a heading starts a
new block and names the section the following blocks are in (headings inside ``` fences are
code, not headings). A file named .txt that holds binary data (NUL bytes, or bytes that are
neither UTF-8 nor plausible legacy text) is refused.
"""

from __future__ import annotations

import codecs
import re

from app.kernel.documents.pieces import Extracted, Piece, Skip

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Control characters that do not occur in text (tab, newline, CR, form feed and ESC aside).
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27)) + b"\x7f"
_MAX_CONTROL_SHARE = 0.01


def decode(data: bytes) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data:
        raise Skip("binary data (NUL bytes), not text, despite its name", "binary")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: legacy text (Windows-1252 notes from 2005) reads fine; random bytes do not.
    sample = data[:65536]
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if controls > _MAX_CONTROL_SHARE * len(sample):
        raise Skip("binary data (not UTF-8 and full of control bytes), not text, despite its name", "binary")
    return data.decode("cp1252", errors="replace")


def extract_lines(data: bytes, *, markdown: bool) -> Extracted:
    text = decode(data)
    pieces: list[Piece] = []
    block: list[str] = []
    start = 0
    heading = ""
    fenced = False
    lines = text.splitlines()

    def close(end: int) -> None:
        nonlocal block
        if block:
            pieces.append(Piece("\n".join(block), start, end, heading))
            block = []

    for number, line in enumerate(lines, 1):
        if markdown and _FENCE.match(line):
            fenced = not fenced
        title = _HEADING.match(line) if markdown and not fenced else None
        if title:
            close(number - 1)
            heading = title.group(2)[:120]
        elif not line.strip():
            close(number - 1)
            continue
        if not block:
            start = number
        block.append(line.rstrip())
    close(len(lines))
    return Extracted("line", pieces, pages=0)  # pages: only formats that have them
