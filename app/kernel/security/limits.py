"""Per-app rate limits and daily token/cost budgets, checked before a request is routed.

Rate: a token bucket per app holding at most one minute's worth of requests, refilled
continuously, so an app may burst up to its per-minute limit and then runs at the limit.
Budgets: tokens and dollars spent per UTC day, counted from finished requests (the audit
log seeds today's spending at start-up, so a restart does not reset a budget). A request
that starts under budget may finish over it; the next one is refused.

Both refusals are 429s with a sentence saying which limit, how far over and when it resets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.kernel.errors import RateLimitError
from app.kernel.security.apps import AppIdentity

DAY = 86400.0


class BudgetExceededError(RateLimitError):
    code = "budget_exceeded"
    retryable = False  # not before tomorrow: the router and SDKs should not spin on it


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


@dataclass(slots=True)
class Spending:
    tokens: int = 0
    cost: float = 0.0


class Limits:
    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._day = self._day_of(clock())
        self._spent: dict[str, Spending] = {}

    @staticmethod
    def _day_of(ts: float) -> int:
        return int(ts // DAY)

    # -- spending --------------------------------------------------------------------------------
    def seed(self, spent: dict[str, Spending], day_start: float) -> None:
        """Today's spending so far (from the audit log), read at start-up."""
        if self._day_of(day_start) == self._day:
            self._spent = dict(spent)

    def record(self, app: str | None, tokens: int, cost: float, ts: float) -> None:
        if app is None:
            return
        day = self._day_of(ts)
        if day != self._day:
            if day < self._day:
                return  # yesterday's late straggler: today's budget is not charged for it
            self._day, self._spent = day, {}
        spent = self._spent.setdefault(app, Spending())
        spent.tokens += tokens
        spent.cost += cost

    def spent(self, app: str) -> Spending:
        if self._day_of(self._clock()) != self._day:
            return Spending()
        return self._spent.get(app) or Spending()

    @staticmethod
    def today_start(now: float) -> float:
        return (now // DAY) * DAY

    # -- the check -------------------------------------------------------------------------------
    def check(self, app: AppIdentity, *, rate: bool = True) -> None:
        """Raise RateLimitError / BudgetExceededError if this app may not start a request now.
        With `rate`, a request is taken from its rate limit (the budgets are only looked at)."""
        limits = app.limits
        if (
            limits.rate_limit_rpm is None
            and limits.daily_token_budget is None
            and limits.daily_cost_budget is None
        ):
            return
        now = self._clock()
        if limits.daily_token_budget is not None or limits.daily_cost_budget is not None:
            self._check_budget(app, now)
        if rate and limits.rate_limit_rpm is not None:
            self._take(app.id, limits.rate_limit_rpm, now)

    def take(self, app: AppIdentity) -> None:
        """Take one request from the app's rate limit, if it has one (RateLimitError if none is left)."""
        if app.limits.rate_limit_rpm is not None:
            self._take(app.id, app.limits.rate_limit_rpm, self._clock())

    def refund(self, app_id: str) -> None:
        """Give back a request taken for one that was not started after all."""
        bucket = self._buckets.get(app_id)
        if bucket is not None:
            bucket.tokens += 1.0  # the next take's refill caps it at the limit

    def _take(self, app_id: str, rpm: int, now: float) -> None:
        if rpm <= 0:
            raise RateLimitError(
                f"app {app_id!r} is paused (its rate limit is 0 requests per minute)", retry_after=60.0
            )
        bucket = self._buckets.get(app_id)
        if bucket is None:
            bucket = self._buckets[app_id] = _Bucket(float(rpm), now)
        rate = rpm / 60.0
        bucket.tokens = min(float(rpm), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = (1.0 - bucket.tokens) / rate
        raise RateLimitError(
            f"app {app_id!r} is over its rate limit of {rpm} requests per minute; try again in {wait:.1f} s",
            retry_after=wait,
        )

    def _check_budget(self, app: AppIdentity, now: float) -> None:
        spent = self.spent(app.id)
        reset_in = self.today_start(now) + DAY - now
        when = f"resets at 00:00 UTC, in {_duration(reset_in)}"
        tokens, cost = app.limits.daily_token_budget, app.limits.daily_cost_budget
        if tokens is not None and spent.tokens >= tokens:
            raise BudgetExceededError(
                f"app {app.id!r} used its daily token budget ({spent.tokens:,} of {tokens:,} tokens); {when}",
                retry_after=reset_in,
            )
        if cost is not None and spent.cost >= cost:
            raise BudgetExceededError(
                f"app {app.id!r} used its daily cost budget (${spent.cost:.4f} of ${cost:.2f}); {when}",
                retry_after=reset_in,
            )


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{max(minutes, 1)} min"
