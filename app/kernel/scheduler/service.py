"""The scheduler's shared state: the policy and starvation bound every deployment's queue
follows, the clock they measure service on, and which program an app's calls run as.

One `Scheduler` per kernel (the router holds it); each deployment makes its own `WaitQueue`
from it the first time it is contended. Changing the policy (`configure`) takes effect at each
queue's next push or hand-over: the queue re-indexes its waiters for the new policy then.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from app.kernel.errors import BadRequestError
from app.kernel.scheduler.policies import Policy
from app.kernel.scheduler.program import Program, ProgramClass, lowered
from app.kernel.scheduler.queue import WaitQueue

DEFAULT_STARVATION_S = 30.0
MAX_STARVATION_S = 3600.0


class Scheduled(Protocol):
    """What `snapshot` reads of a deployment (app.kernel.socket.router.Deployment)."""

    @property
    def id(self) -> str: ...

    limit: int
    in_flight: int
    preemptible: bool
    wait_queue: WaitQueue | None


class Scheduler:
    def __init__(self, policy: Policy | str = Policy.LAS, starvation_s: float = DEFAULT_STARVATION_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.version = 0  # bumped by configure(): queues re-index when it moved
        self.policy = Policy.parse(policy)
        self.starvation_s = check_starvation(starvation_s)
        self._assigned: dict[str, Program] = {}  # app id → the program its calls run as (agents)
        self._apps: dict[str, Program] = {}  # app id → its default program (cached)

    @classmethod
    def from_settings(cls, settings: Any, *, clock: Callable[[], float] = time.monotonic) -> Scheduler:
        """From `Settings.scheduler` (app.kernel.config.SchedulerSettings)."""
        return cls(settings.policy, settings.starvation_s, clock=clock)

    def configure(self, *, policy: Policy | str | None = None, starvation_s: float | None = None) -> None:
        """Change the policy or the starvation bound (both checked before either changes)."""
        new_policy = self.policy if policy is None else Policy.parse(policy)
        new_bound = self.starvation_s if starvation_s is None else check_starvation(starvation_s)
        self.policy, self.starvation_s = new_policy, new_bound
        self.version += 1

    def new_queue(self, *, preemptible: bool = False) -> WaitQueue:
        return WaitQueue(self, preemptible=preemptible)

    # -- which program an app's calls run as -------------------------------------------------------
    def assign(self, app_id: str, program: Program) -> None:
        """Calls through the gateway with `app_id`'s token run as `program` (an external agent's
        process: its pid, class and priority) until `unassign`."""
        self._assigned[app_id] = program

    def unassign(self, app_id: str) -> None:
        self._assigned.pop(app_id, None)

    def program_for_app(self, app_id: str, *, header: str | None = None, admin: bool = False) -> Program:
        """The program one gateway request of `app_id` runs as: the one assigned to the app, else
        the app as an `interactive` program; lowered by an `X-ByenatOS-Priority` header value."""
        program = self._assigned.get(app_id)
        if program is None:
            program = self._apps.get(app_id)
            if program is None:
                if len(self._apps) >= 4096:
                    self._apps.clear()
                program = self._apps[app_id] = Program(app_id, ProgramClass.INTERACTIVE)
        return program if header is None else lowered(program, header, admin=admin)

    # -- reading ---------------------------------------------------------------------------------
    def snapshot(self, deployments: Iterable[Scheduled], *, top: int = 10) -> dict[str, Any]:
        """The policy and, per deployment, what runs, what waits by class, and the programs
        with the most attained service (GET /api/scheduler)."""
        return {
            "policy": self.policy.value,
            "starvation_s": self.starvation_s,
            "policies": [p.value for p in Policy],
            "deployments": [_deployment(d, top) for d in deployments],
        }


def _deployment(d: Scheduled, top: int) -> dict[str, Any]:
    queue = d.wait_queue
    state: dict[str, Any] = {"model": d.id, "limit": d.limit, "running": d.in_flight, "preemptible": d.preemptible}
    if queue is None:
        empty = {c.value: 0 for c in ProgramClass}
        state.update(waiting=empty, oldest_wait_s=0.0, handed_over=0, starvation_rescues=0, programs=[])
    else:
        state.update(queue.snapshot(top))
    return state


def check_starvation(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequestError(f"the starvation bound is a number of seconds, not {value!r}")
    if not 0 < value <= MAX_STARVATION_S:
        raise BadRequestError(f"the starvation bound must be above 0 and at most {MAX_STARVATION_S:g} s "
                              f"(a waiting call is served at the latest this long after it arrived), not {value:g}")
    return float(value)
