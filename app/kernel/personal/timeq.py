"""Time in a question: "last week", "in May", "yesterday", "上周", "昨天", "五月" → a time range.

Resolved against the user's local calendar (weeks start on Monday) at `now`; the words that
named the time are taken out of the query, so that "yesterday" does not have to appear in a
record for it to match. A month or weekday names the latest one not in the future ("in May"
asked in March is last May). One expression per query: the longest found wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for m in names
}
WEEKDAYS = {
    d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
_CN_NUM = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_CN_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: float  # epoch seconds, inclusive
    until: float  # epoch seconds, exclusive
    phrase: str  # the words that named it
    rest: str  # the query without them

    def to_dict(self) -> dict[str, object]:
        return {
            "since": datetime.fromtimestamp(self.since).astimezone().isoformat(),
            "until": datetime.fromtimestamp(self.until).astimezone().isoformat(),
            "phrase": self.phrase,
        }


def _cn_number(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if s in _CN_NUM:
        return _CN_NUM[s]
    if len(s) == 2 and s[0] == "十" and s[1] in _CN_NUM:  # 十一, 十二
        return 10 + _CN_NUM[s[1]]
    return None


def _day(d: date) -> float:
    return datetime(d.year, d.month, d.day).astimezone().timestamp()


def _days(start: date, n: int) -> tuple[float, float]:
    return _day(start), _day(start + timedelta(days=n))


def _month(year: int, month: int) -> tuple[float, float]:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return _day(date(year, month, 1)), _day(nxt)


def _latest_month(today: date, month: int, year: int | None) -> tuple[float, float]:
    if year is None:
        year = today.year if month <= today.month else today.year - 1
    return _month(year, month)


def _latest_weekday(today: date, weekday: int, *, before_this_week: bool = False) -> tuple[float, float]:
    back = (today.weekday() - weekday) % 7
    if before_this_week:  # "last Tuesday" said on a Friday: this week's Tuesday is what people mean
        back = back or 7
    return _days(today - timedelta(days=back), 1)


_WORD_NUMS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}

# (pattern, resolver(match, today) -> (since, until)); tried in order.
_RULES: list[tuple[re.Pattern[str], object]] = []


def _rule(pattern: str):  # type: ignore[no-untyped-def]
    def deco(fn):  # type: ignore[no-untyped-def]
        _RULES.append((re.compile(pattern, re.IGNORECASE), fn))
        return fn

    return deco


@_rule(r"\b(?:the\s+)?day\s+before\s+yesterday\b|前天")
def _before_yesterday(m: re.Match[str], today: date) -> tuple[float, float]:
    return _days(today - timedelta(days=2), 1)


@_rule(r"\byesterday\b|昨天|昨日")
def _yesterday(m: re.Match[str], today: date) -> tuple[float, float]:
    return _days(today - timedelta(days=1), 1)


@_rule(r"\btoday\b|\bthis\s+morning\b|\btonight\b|今天|今日|今早|今晚")
def _today(m: re.Match[str], today: date) -> tuple[float, float]:
    return _days(today, 1)


@_rule(r"\blast\s+week\b|\bthe\s+week\s+before\b|\bprevious\s+week\b|上周|上星期|上个星期|上个礼拜|上礼拜")
def _last_week(m: re.Match[str], today: date) -> tuple[float, float]:
    return _days(today - timedelta(days=today.weekday() + 7), 7)


@_rule(r"\bthis\s+week\b|本周|这周|这个星期|这星期|本星期")
def _this_week(m: re.Match[str], today: date) -> tuple[float, float]:
    return _days(today - timedelta(days=today.weekday()), 7)


@_rule(r"\blast\s+month\b|\bprevious\s+month\b|上个月|上月")
def _last_month(m: re.Match[str], today: date) -> tuple[float, float]:
    first = today.replace(day=1) - timedelta(days=1)
    return _month(first.year, first.month)


@_rule(r"\bthis\s+month\b|这个月|本月")
def _this_month(m: re.Match[str], today: date) -> tuple[float, float]:
    return _month(today.year, today.month)


@_rule(r"\blast\s+year\b|去年")
def _last_year(m: re.Match[str], today: date) -> tuple[float, float]:
    return _day(date(today.year - 1, 1, 1)), _day(date(today.year, 1, 1))


@_rule(r"\bthis\s+year\b|今年")
def _this_year(m: re.Match[str], today: date) -> tuple[float, float]:
    return _day(date(today.year, 1, 1)), _day(date(today.year + 1, 1, 1))


@_rule(
    r"\b(\d+|a|an|one|two|three|four|five|six|seven)\s+(day|week)s?\s+ago\b|(\d+|[一二三四五六七八九十])\s*(天|周|个星期)前"
)
def _ago(m: re.Match[str], today: date) -> tuple[float, float]:
    if m.group(1):
        n = int(m.group(1)) if m.group(1).isdigit() else _WORD_NUMS[m.group(1).lower()]
        unit = m.group(2).lower()
    else:
        n = _cn_number(m.group(3)) or 1
        unit = "day" if m.group(4) == "天" else "week"
    if unit == "day":
        return _days(today - timedelta(days=n), 1)
    start = today - timedelta(days=today.weekday() + 7 * n)
    return _days(start, 7)


@_rule(r"\b(?:in\s+the\s+)?(?:last|past)\s+(\d+)\s+days\b|(?:最近|过去)(\d+|[一二三四五六七八九十])天")
def _past_days(m: re.Match[str], today: date) -> tuple[float, float]:
    n = int(m.group(1)) if m.group(1) else (_cn_number(m.group(2)) or 1)
    return _day(today - timedelta(days=n)), _day(today + timedelta(days=1))


_MONTH_NAMES = "|".join(sorted(MONTHS, key=len, reverse=True))


# "in May", "during May 2024", "last May", "May 2024"; a bare "may" is a verb far too often.
@_rule(
    rf"\b(?:in|during|since|last|this|of)\s+({_MONTH_NAMES})\.?(?:\s+(\d{{4}}))?\b|\b({_MONTH_NAMES})\s+(\d{{4}})\b"
)
def _en_month(m: re.Match[str], today: date) -> tuple[float, float]:
    name = (m.group(1) or m.group(3)).lower()
    year = m.group(2) or m.group(4)
    return _latest_month(today, MONTHS[name], int(year) if year else None)


@_rule(r"(?:(\d{4})\s*年\s*)?(十[一二]|[一二三四五六七八九十]|1[0-2]|0?[1-9])\s*月(?!\s*\d{1,2}\s*[日号])")
def _cn_month(m: re.Match[str], today: date) -> tuple[float, float]:
    month = _cn_number(m.group(2).lstrip("0")) or 1
    return _latest_month(today, month, int(m.group(1)) if m.group(1) else None)


@_rule(r"\b(?:in|during)\s+(\d{4})\b|(\d{4})\s*年")
def _year(m: re.Match[str], today: date) -> tuple[float, float]:
    y = int(m.group(1) or m.group(2))
    return _day(date(y, 1, 1)), _day(date(y + 1, 1, 1))


@_rule(r"\b(last|on|this)\s+(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b")
def _en_weekday(m: re.Match[str], today: date) -> tuple[float, float]:
    return _latest_weekday(today, WEEKDAYS[m.group(2).lower()], before_this_week=m.group(1).lower() == "last")


@_rule(r"(上)?(?:周|星期|礼拜)([一二三四五六日天])")
def _cn_weekday(m: re.Match[str], today: date) -> tuple[float, float]:
    wd = _CN_WEEKDAY[m.group(2)]
    if m.group(1):  # 上周二: Tuesday of last week
        start = today - timedelta(days=today.weekday() + 7 - wd)
        return _days(start, 1)
    return _latest_weekday(today, wd)


def resolve(query: str, now: datetime | None = None) -> TimeRange | None:
    """The time range `query` names, if any (first expression found, by the rules' order)."""
    if not query:
        return None
    today = (now or datetime.now()).astimezone().date()
    # The longest expression wins ("上周二" over "上周", "May 2024" over "2024"); then rule order.
    best: tuple[int, int, re.Match[str], object] | None = None
    for order, (pattern, fn) in enumerate(_RULES):
        m = pattern.search(query)
        if m is not None:
            cand = (-(m.end() - m.start()), order, m, fn)
            if best is None or cand[:2] < best[:2]:
                best = cand
    if best is None:
        return None
    _, _, m, fn = best
    try:
        since, until = fn(m, today)  # type: ignore[operator]
    except (ValueError, OverflowError):  # "in 0000", month 13: no range rather than an error
        return None
    rest = " ".join((query[: m.start()] + " " + query[m.end() :]).split())
    return TimeRange(since, until, m.group(0).strip(), rest)
