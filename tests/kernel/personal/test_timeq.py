"""Time named in a question, resolved on the local calendar."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.kernel.personal.timeq import resolve

FRIDAY = datetime(2025, 3, 14, 15, 30)  # Friday 14 March 2025, local time


def _days(q: str) -> tuple[str, str, str] | None:
    r = resolve(q, FRIDAY)
    if r is None:
        return None
    return (
        datetime.fromtimestamp(r.since).strftime("%Y-%m-%d"),
        datetime.fromtimestamp(r.until).strftime("%Y-%m-%d"),
        r.rest,
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("what did I do last week", ("2025-03-03", "2025-03-10", "what did I do")),
        ("yesterday", ("2025-03-13", "2025-03-14", "")),
        ("the day before yesterday", ("2025-03-12", "2025-03-13", "")),
        ("dinner in May", ("2024-05-01", "2024-06-01", "dinner")),  # the latest May, not a future one
        ("in March", ("2025-03-01", "2025-04-01", "")),
        ("May 2023 trip", ("2023-05-01", "2023-06-01", "trip")),
        ("last Tuesday", ("2025-03-11", "2025-03-12", "")),
        ("3 days ago", ("2025-03-11", "2025-03-12", "")),
        ("last month", ("2025-02-01", "2025-03-01", "")),
        ("上周我做了什么", ("2025-03-03", "2025-03-10", "我做了什么")),
        ("昨天", ("2025-03-13", "2025-03-14", "")),
        ("五月的旅行", ("2024-05-01", "2024-06-01", "的旅行")),
        ("2024年5月", ("2024-05-01", "2024-06-01", "")),
        ("上周二的会议", ("2025-03-04", "2025-03-05", "的会议")),
        ("十二月", ("2024-12-01", "2025-01-01", "")),
    ],
)
def test_times_are_resolved(query, expected):
    assert _days(query) == expected


@pytest.mark.parametrize(
    "query", ["May I ask you something", "When did Ana go to the climbing gym?", "钢琴课是什么时候", ""]
)
def test_no_time_no_range(query):
    assert resolve(query, FRIDAY) is None
