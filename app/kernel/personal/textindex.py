"""What the full-text index sees, and how user text becomes a safe FTS5 query.

FTS5's `unicode61` tokenizer splits on spaces and punctuation; Chinese and Japanese have
neither between words, so a whole sentence became one token and no query word ever matched
it. CJK runs are therefore indexed as overlapping character bigrams ("钢琴课" → "钢琴 琴课"),
the approach of Lucene's CJKAnalyzer: it needs no dictionary, works for Chinese, Japanese and
Korean alike, and a two-character word — the most common length in Chinese — is one bigram.
Queries get the same treatment, minus question words ("什么时候", "哪里") that would match
everything; a lone character becomes a prefix query over the bigrams it starts.

Every user word is quoted in the query, so no FTS5 operator gets through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.kernel.personal.enhance import STOP_WORDS

# Han (with extensions A and the compatibility block), kana, Hangul syllables.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
CJK_RUN = re.compile(f"[{_CJK}]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
_WORD_RE = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_PHRASE_RE = re.compile(r'"([^"]+)"|“([^”]+)”|「([^」]+)」')
# Question words and sentence-final particles: in a query they carry no content.
CJK_STOP = sorted(
    "什么时候 为什么 是什么 什么 时候 哪里 哪儿 怎么样 怎么 多少 几点 哪个 哪些 哪天 请问 一下 告诉我 "
    "是不是 有没有 吗 呢 吧 啊 呀".split(),
    key=len,
    reverse=True,
)
_CJK_STOP_RE = re.compile("|".join(map(re.escape, CJK_STOP)))
MAX_TERMS = 32


def has_cjk(text: str) -> bool:
    return bool(_HAS_CJK.search(text))


def bigrams(run: str) -> list[str]:
    return [run] if len(run) < 2 else [run[i : i + 2] for i in range(len(run) - 1)]


def index_text(text: str) -> str:
    """`text` as the FTS index should tokenize it: CJK runs as bigrams, the rest unchanged."""
    if not text or not has_cjk(text):
        return text
    return CJK_RUN.sub(lambda m: " " + " ".join(bigrams(m.group())) + " ", text)


@dataclass(frozen=True, slots=True)
class Query:
    """A search request's text, split: phrases that must appear verbatim, and loose words."""

    words: list[str]
    phrases: list[str]

    @classmethod
    def parse(cls, text: str, phrase: str | None = None) -> Query:
        phrases = [p for m in _PHRASE_RE.finditer(text) for p in m.groups() if p and p.strip()]
        rest = _PHRASE_RE.sub(" ", text)
        if phrase and phrase.strip():
            phrases.append(phrase)
        return cls(words=_WORD_RE.findall(rest.lower()), phrases=[p.strip() for p in phrases])


def _terms(words: list[str], *, any_word: bool) -> list[str]:
    """FTS5 terms (quoted strings, or `"x"*` prefixes) for query words."""
    out: list[str] = []
    latin = [w for w in words if not has_cjk(w) and (len(w) > 1 or w.isdigit())]
    if any_word:  # ranking by any word: "which", "should", "the" would match everything
        latin = [w for w in latin if w not in STOP_WORDS] or latin
    latin_set = set(latin)
    for w in words:
        if has_cjk(w):
            parts = _CJK_STOP_RE.split(w) if any_word else [w]
            for part in parts:
                if len(part) == 1:
                    out.append(f'"{part}"*')
                elif part:
                    out.extend(f'"{b}"' for b in bigrams(part))
        elif w in latin_set:
            out.append(f'"{w}"')
    return list(dict.fromkeys(out))[:MAX_TERMS]


def phrase_term(phrase: str) -> str | None:
    """One FTS5 phrase: the words in order (a CJK run as its bigrams, which sit in order too)."""
    tokens: list[str] = []
    for w in _WORD_RE.findall(phrase.lower()):
        tokens.extend(bigrams(w) if has_cjk(w) else [w])
    return '"' + " ".join(tokens) + '"' if tokens else None


def fts_query(text: str, *, any_word: bool) -> str | None:
    """User text → a safe FTS5 query: each word quoted (no operators get through), OR'd or AND'ed.
    Quoted phrases in `text` are kept as phrases: required in every mode."""
    return build_query(Query.parse(text), any_word=any_word)


def build_query(q: Query, *, any_word: bool) -> str | None:
    """Phrases are required; loose words are OR'd (`any_word`: they rank) or AND'ed (all required).
    `P AND (P OR w…)` keeps only rows with P and lets every word count in the BM25 score."""
    terms = _terms(q.words, any_word=any_word)
    phrases = [p for p in (phrase_term(x) for x in q.phrases) if p]
    loose = (" OR " if any_word else " AND ").join(terms)
    if not phrases:
        return loose or None
    required = " AND ".join(phrases)
    if not loose:
        return required
    if any_word:
        return f"{required} AND ({phrases[0]} OR {loose})"
    return f"{required} AND {loose}"


# -- what matched ---------------------------------------------------------------------------------

_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_]+", re.UNICODE)


def _norm(word: str) -> str:
    """A crude stem for matching display words (the index uses Porter; this only highlights)."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def matched_words(q: Query, text: str) -> list[str]:
    """Which of the query's content words (and phrases) occur in `text`."""
    low = text.lower()
    tokens = {_norm(t) for t in _TOKEN_RE.findall(low) if not has_cjk(t)}
    found: list[str] = [p for p in q.phrases if p.lower() in low]
    for w in q.words:
        if has_cjk(w):
            for part in _CJK_STOP_RE.split(w):
                grams = bigrams(part) if len(part) > 1 else [part] if part else []
                found.extend(g for g in grams if g in low)
        elif w not in STOP_WORDS and (len(w) > 1 or w.isdigit()) and _norm(w) in tokens:
            found.append(w)
    return list(dict.fromkeys(found))


def best_passage(q: Query, text: str, *, size: int = 240) -> str:
    """The `size`-character window of `text` holding the most distinct matched words."""
    text = " ".join(text.split())
    if len(text) <= size:
        return text
    words = matched_words(q, text)
    low = text.lower()
    hits = sorted((m.start(), w) for w in words for m in re.finditer(re.escape(w.lower()), low))
    if not hits:
        return text[: size - 1].rstrip() + "…"
    best_start, best_n = hits[0][0], 0
    j = 0
    for i, (pos, _) in enumerate(hits):  # two pointers: windows starting at each hit
        while j < len(hits) and hits[j][0] < pos + size:
            j += 1
        n = len({w for _, w in hits[i:j]})
        if n > best_n:
            best_start, best_n = pos, n
    start = max(0, best_start - size // 5)
    while 0 < start < len(text) and text[start - 1].isalnum() and not has_cjk(text[start]):
        start -= 1  # do not cut a word in half
    end = min(len(text), start + size)
    out = text[start:end].strip()
    return ("…" if start > 0 else "") + out + ("…" if end < len(text) else "")


def fts_terms(q: Query) -> list[str]:
    """The loose words' FTS5 terms (empty when every word is a stop word or a lone letter)."""
    return _terms(q.words, any_word=True)
