"""Small helpers for readable terminal output."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def human_tokens(n: int | None) -> str:
    if not n:
        return "?"
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else (f"{n / 1000:.0f}k" if n >= 1000 else str(n))


def human_bytes(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def err(message: str) -> None:
    print(f"byenatos: {message}", file=sys.stderr)
