"""Per-app rate limits and daily budgets, on a clock the test controls."""

from __future__ import annotations

import pytest

from app.kernel.errors import RateLimitError
from app.kernel.security.apps import AppIdentity, AppLimits
from app.kernel.security.limits import DAY, BudgetExceededError, Limits, Spending


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def app(**limits) -> AppIdentity:
    return AppIdentity("a", frozenset({"chat"}), AppLimits(**limits))


def test_no_limits_never_refuses():
    limits = Limits()
    for _ in range(1000):
        limits.check(app())


def test_rate_limit_bursts_a_minute_then_refills():
    clock = Clock(1000.0)
    limits = Limits(clock)
    for _ in range(3):
        limits.check(app(rate_limit_rpm=3))
    with pytest.raises(RateLimitError) as e:
        limits.check(app(rate_limit_rpm=3))
    assert e.value.retry_after == pytest.approx(20.0) and "3 requests per minute" in str(e.value)
    clock.now += 20.0
    limits.check(app(rate_limit_rpm=3))


def test_a_check_without_rate_only_looks_and_take_refund_count_one_request():
    limits = Limits(Clock(1000.0))
    rated = app(rate_limit_rpm=1, daily_token_budget=10)
    for _ in range(3):
        limits.check(rated, rate=False)  # the budget looked at, nothing taken
    limits.take(rated)  # the one request of this minute
    with pytest.raises(RateLimitError):
        limits.take(rated)
    limits.refund("a")  # it was not started after all
    limits.check(rated)  # so this one may start
    with pytest.raises(RateLimitError):
        limits.check(rated)
    limits.take(app())  # no rate limit: nothing to take


def test_zero_rate_pauses_the_app():
    with pytest.raises(RateLimitError, match="paused"):
        Limits().check(app(rate_limit_rpm=0))


def test_daily_budgets_count_and_reset_at_midnight_utc():
    clock = Clock(10 * DAY + 3600)
    limits = Limits(clock)
    limits.record("a", 90, 0.5, clock.now)
    limits.check(app(daily_token_budget=100, daily_cost_budget=1.0))
    limits.record("a", 20, 0.6, clock.now)
    with pytest.raises(BudgetExceededError) as e:
        limits.check(app(daily_token_budget=100))
    assert "110 of 100 tokens" in str(e.value) and e.value.retry_after == pytest.approx(DAY - 3600)
    with pytest.raises(BudgetExceededError, match="cost budget"):
        limits.check(app(daily_cost_budget=1.0))
    clock.now = 11 * DAY + 1
    limits.check(app(daily_token_budget=100, daily_cost_budget=1.0))  # a new day
    limits.record("a", 5, 0.0, 10 * DAY + 5)  # a late row from yesterday does not count today
    assert limits.spent("a").tokens == 0


def test_seeded_spending_survives_a_restart():
    clock = Clock(10 * DAY + 60)
    limits = Limits(clock)
    limits.seed({"a": Spending(500, 0.0)}, Limits.today_start(clock.now))
    with pytest.raises(BudgetExceededError):
        limits.check(app(daily_token_budget=500))
