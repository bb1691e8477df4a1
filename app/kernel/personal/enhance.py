"""Enhancement: semantic tags, topics, key concepts and an importance score for a record.

Two methods, same output. `keywords` runs locally, always, at ingest: RAKE-style phrase
scoring (phrases split at stop words and punctuation, word score = degree / frequency) plus a
small topic lexicon and importance cues. `model` asks the model in the socket for the same
JSON, in the background, and only when the user turned it on (`enhance_with_model`). Either
way the result is stored beside the record; the record itself is never changed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_STOP = frozenset(
    """
a about above after again against all also am an and any are aren't as at be because been before being below
between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few
for from further get got had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's like
me more most mustn't my myself no nor not now of off on once only or other ought our ours ourselves out over
own really same shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs
them themselves then there there's these they they'd they'll they're they've this those through to too under
until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
while who who's whom why why's will with won't would wouldn't you you'd you'll you're you've your yours
yourself yourselves one two use used using want wants make made much many thing things way well also still
even every via per etc e.g i.e new today yesterday tomorrow maybe lot lots
""".split()
)
STOP_WORDS = _STOP
_WORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+#'-]*")
_SPLIT = re.compile(r"[.,;:!?()\[\]{}\"“”\n\t|/\\]+|\s-\s")

# Topics a personal note is usually about, with words that signal them. Small on purpose:
# a topic is a coarse shelf; tags and concepts carry the detail.
TOPICS: dict[str, tuple[str, ...]] = {
    "programming": (
        "python",
        "code",
        "bug",
        "api",
        "function",
        "rust",
        "javascript",
        "typescript",
        "git",
        "compiler",
        "database",
        "sql",
        "debug",
        "refactor",
        "test",
        "library",
        "framework",
        "deploy",
    ),
    "work": (
        "meeting",
        "project",
        "deadline",
        "client",
        "manager",
        "team",
        "review",
        "roadmap",
        "quarter",
        "okr",
        "colleague",
        "presentation",
        "report",
        "sprint",
        "office",
        "hiring",
    ),
    "health": (
        "doctor",
        "sleep",
        "run",
        "running",
        "gym",
        "diet",
        "allergy",
        "allergic",
        "medication",
        "workout",
        "health",
        "pain",
        "yoga",
        "weight",
        "vitamin",
        "therapy",
        "dentist",
    ),
    "food": (
        "recipe",
        "cook",
        "cooking",
        "restaurant",
        "vegetarian",
        "vegan",
        "coffee",
        "tea",
        "dinner",
        "lunch",
        "breakfast",
        "bake",
        "spicy",
        "cuisine",
        "eat",
        "food",
    ),
    "travel": (
        "trip",
        "flight",
        "hotel",
        "travel",
        "visa",
        "airport",
        "train",
        "itinerary",
        "vacation",
        "holiday",
        "passport",
        "tokyo",
        "japan",
        "paris",
        "booking",
    ),
    "finance": (
        "budget",
        "invest",
        "investment",
        "stock",
        "tax",
        "taxes",
        "salary",
        "rent",
        "mortgage",
        "savings",
        "bank",
        "expense",
        "price",
        "pay",
        "insurance",
    ),
    "family": (
        "kid",
        "kids",
        "daughter",
        "son",
        "wife",
        "husband",
        "partner",
        "mom",
        "dad",
        "mother",
        "father",
        "birthday",
        "anniversary",
        "family",
        "parents",
        "sister",
        "brother",
    ),
    "learning": (
        "learn",
        "learning",
        "course",
        "book",
        "read",
        "reading",
        "study",
        "language",
        "lesson",
        "tutorial",
        "paper",
        "lecture",
        "practice",
        "spanish",
        "german",
        "french",
    ),
    "music": ("music", "song", "album", "guitar", "piano", "band", "concert", "playlist", "jazz"),
    "writing": ("write", "writing", "essay", "blog", "draft", "novel", "article", "style", "tone", "edit"),
    "home": ("house", "apartment", "garden", "repair", "furniture", "move", "moving", "plumber", "cleaning"),
}
_IMPORTANT_CUES = (
    "always",
    "never",
    "important",
    "prefer",
    "preference",
    "must",
    "remember",
    "allergic",
    "hate",
    "love",
    "don't",
    "avoid",
    "favorite",
    "favourite",
    "deadline",
    "goal",
)


@dataclass
class Enhancement:
    tags: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    concepts: list[str] = field(default_factory=list)
    importance: float = 0.0
    method: str = "keywords"

    @property
    def words(self) -> str:
        """Text for the full-text index, so a search for a topic or concept finds the record."""
        return " ".join([*self.tags, *self.topics, *self.concepts])


def _phrases(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    for chunk in _SPLIT.split(text):
        cur: list[str] = []
        for w in _WORD.findall(chunk):
            lw = w.lower().strip("'-")
            if lw in _STOP or len(lw) < 2:
                if cur:
                    out.append(cur)
                cur = []
            else:
                cur.append(lw)
        if cur:
            out.append(cur)
    return out


def keywords(
    highlight: str, note: str = "", tags: list[str] | None = None, metadata: dict[str, Any] | None = None
) -> Enhancement:
    """The local method: no model, no network, a few hundred microseconds per record."""
    text = f"{highlight}\n{note}"
    phrases = [p[:4] for p in _phrases(text)]
    freq: Counter[str] = Counter()
    degree: Counter[str] = Counter()
    for p in phrases:
        for w in p:
            freq[w] += 1
            degree[w] += len(p)
    word_score = {w: degree[w] / freq[w] for w in freq}
    scored: dict[str, float] = {}
    for p in phrases:
        key = " ".join(p)
        if len(p) > 1 or len(p[0]) > 3:
            scored[key] = max(scored.get(key, 0.0), sum(word_score[w] for w in p))
    concepts = [k for k, _ in sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:6]]
    own = [t.lower() for t in tags or []]
    singles = [
        w
        for w, _ in sorted(freq.items(), key=lambda kv: (-kv[1] * word_score[kv[0]], kv[0]))
        if len(w) > 3 and not w.isdigit()
    ]
    sem_tags = list(dict.fromkeys([*own, *singles]))[:8]
    words = set(freq) | set(own)
    topic_hits = {t: sum(1 for s in seeds if s in words) for t, seeds in TOPICS.items()}
    topics = [t for t, n in sorted(topic_hits.items(), key=lambda kv: (-kv[1], kv[0])) if n > 0][:3]
    return Enhancement(
        tags=sem_tags,
        topics=topics,
        concepts=concepts,
        importance=importance(highlight, note, tags or [], metadata),
    )


def importance(highlight: str, note: str, tags: list[str], metadata: dict[str, Any] | None) -> float:
    """0-1: an explicit `metadata.importance` wins; otherwise cues the user left."""
    if metadata and isinstance(metadata.get("importance"), int | float):
        return max(0.0, min(1.0, float(metadata["importance"])))
    lower = f"{highlight} {note}".lower()
    score = 0.2
    score += 0.15 * min(2, sum(1 for c in _IMPORTANT_CUES if c in lower))
    score += 0.1 if note else 0.0  # the user took the time to write about it
    score += 0.05 * min(3, len(tags))
    score += 0.1 * min(1.0, math.log1p(len(note)) / math.log1p(2000))
    if any(t.lower() in ("important", "pinned", "core", "preference", "rule") for t in tags):
        score += 0.2
    return round(min(1.0, score), 3)


ENHANCE_PROMPT = (
    "You extract structured memory metadata from a personal note. Answer with JSON only: "
    '{"tags": [up to 8 short lowercase semantic tags], "topics": [up to 3 broad topics], '
    '"concepts": [up to 6 key concepts or named things], "importance": a number from 0 to 1 '
    "for how much this matters to the person over time}."
)


def parse_model_answer(text: str) -> Enhancement | None:
    """The model's JSON, checked and clamped; None if it is not usable."""
    import orjson

    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = orjson.loads(text[start : end + 1])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None

    def strings(v: Any, n: int) -> list[str]:
        return [str(x).strip()[:64] for x in v if str(x).strip()][:n] if isinstance(v, list) else []

    imp = data.get("importance")
    return Enhancement(
        tags=strings(data.get("tags"), 8),
        topics=strings(data.get("topics"), 3),
        concepts=strings(data.get("concepts"), 6),
        importance=max(0.0, min(1.0, float(imp))) if isinstance(imp, int | float) else 0.3,
    )
