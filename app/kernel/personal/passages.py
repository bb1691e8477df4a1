"""Long records in passages: one vector per passage, so a 50,000-character note is found by the
paragraph that answers the question.

The embedding model reads at most 256 word pieces (~1,000 characters of English, ~250 of
Chinese) and silently drops the rest: a long note's vector used to be its first paragraph's.
A record that fits keeps one vector, as before; a longer one is cut at sentence ends into
passages of at most ~128 word pieces, each overlapping the previous by one sentence (an
answer that straddles a cut is whole in one of them). Its best passage is its score.
"""

from __future__ import annotations

import re

from app.kernel.personal.textindex import CJK_RUN

MAX_TOKENS = 128  # per passage: short enough that one fact is not drowned by its neighbours
FITS = 240  # a record estimated at most this long keeps one vector
MAX_PASSAGES = 160  # ids key#1..key#159 (the first passage is the record's own id)
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f\uff1b;])\s*|\n+")  # and the full-width ones


def estimate_tokens(text: str) -> int:
    """Word pieces, roughly: a CJK character is about one, other text about 4 characters each."""
    cjk = sum(len(m.group()) for m in CJK_RUN.finditer(text))
    return cjk + (len(text) - cjk + 3) // 4


def split(text: str) -> list[str]:
    """`text` as passages (one when it fits the model), at most MAX_PASSAGES of them."""
    if estimate_tokens(text) <= FITS:
        return [text]
    sentences = [s for s in _SENTENCE_END.split(text) if s and s.strip()]
    pieces: list[str] = []
    for s in sentences:  # a "sentence" longer than a passage (no punctuation) is cut by length
        while estimate_tokens(s) > MAX_TOKENS:
            cut = _cut_at(s, MAX_TOKENS)
            pieces.append(s[:cut])
            s = s[cut:]
        pieces.append(s)
    budget = MAX_TOKENS
    total = sum(estimate_tokens(p) for p in pieces)
    if total / MAX_TOKENS > MAX_PASSAGES - 1:  # a very long text gets longer (truncated) passages
        budget = int(total / (MAX_PASSAGES - 1)) + 1
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for p in pieces:
        t = estimate_tokens(p)
        if cur and size + t > budget:
            out.append(" ".join(cur))
            cur, size = (
                ([cur[-1]], estimate_tokens(cur[-1])) if estimate_tokens(cur[-1]) + t <= budget else ([], 0)
            )
        cur.append(p)
        size += t
    if cur:
        out.append(" ".join(cur))
    return out[:MAX_PASSAGES]


def _cut_at(s: str, tokens: int) -> int:
    """An index into `s` holding about `tokens` word pieces, at a space where there is one."""
    lo, hi = 1, len(s)
    while lo < hi:  # the longest prefix within the estimate
        mid = (lo + hi + 1) // 2
        if estimate_tokens(s[:mid]) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    space = s.rfind(" ", lo // 2, lo)
    return space if space > 0 else lo


def passage_id(key: int, i: int) -> str:
    return str(key) if i == 0 else f"{key}#{i}"


def key_of(vector_id: str) -> int:
    return int(vector_id.split("#", 1)[0])
