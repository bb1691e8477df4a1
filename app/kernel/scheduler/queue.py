"""One deployment's wait queue: who gets the next free slot, and how long each program held one.

A deployment (one model on one provider) takes a slot for each call; while it has a free one
and nobody waits, a call takes it without coming here at all (`Deployment.try_acquire`, a
counter). Only a call that finds every slot busy is queued: `push` makes its `Waiter`, and
the deployment's `release` of a busy slot calls `hand_over`, which gives the slot straight to
the waiter the policy picks (the slot stays counted as in flight; nobody can take it between).

The pick, in order:

1. starvation: a waiter that has waited `starvation_s` or longer goes first (the oldest one);
2. the class: interactive waiters, then normal, then background (not under FIFO);
3. the policy within the class (`policies.py`; LAS by default).

Each slot handed over is a `Hold`: who holds it and since when. Giving it back charges the
time to the program's attained service on this deployment (what LAS orders by); the time of
calls still running counts too, as it accrues. A slot taken on the uncontended path has no
hold and costs nobody anything (nobody was waiting for it), except on a *preemptible*
deployment, where every slot is held so that a running call can be asked to give its slot up
(see `Hold.request_preemption`, and `preemptible` in app.kernel.drivers.base).

Not safe across threads: everything here runs on the kernel's event loop.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from app.kernel.scheduler.policies import Index, Policy, make_index
from app.kernel.scheduler.program import CLASS_RANK, INTERNAL, Program, ProgramClass
from app.kernel.scheduler.waiters import Hold, Waiter

MAX_PROGRAMS = 4096  # service records kept per deployment; the idle ones longest unseen go first
_COMPACT_MIN = 64  # stale entries tolerated before the indices are rebuilt without them


class _Account:
    """One program's use of one deployment."""

    __slots__ = ("attained", "last", "running", "since_sum", "waiting")

    def __init__(self, now: float) -> None:
        self.attained = 0.0  # seconds its finished holds held a slot
        self.running = 0  # holds it has now
        self.since_sum = 0.0  # sum of their start times (service of running holds: running * now - since_sum)
        self.waiting = 0
        self.last = now

    def service(self, now: float) -> float:
        return self.attained + self.running * now - self.since_sum if self.running else self.attained


class Shared(Protocol):
    """What the queues of every deployment share (app.kernel.scheduler.service.Scheduler)."""

    version: int  # moves when the policy or the bound changed
    policy: Policy
    starvation_s: float
    clock: Callable[[], float]


class WaitQueue:
    """The waiters of one deployment, and its programs' attained service (see the module)."""

    def __init__(self, scheduler: Shared, *, preemptible: bool = False) -> None:
        self.scheduler = scheduler
        self.clock = scheduler.clock
        self.preemptible = preemptible
        self._seq = 0
        self._version = -1  # the scheduler's settings the indices were built for
        self._policy = Policy.LAS
        self._arrivals: deque[Waiter] = deque()  # every waiter in arrival order (the starvation rule's)
        self._indices: list[Index] = []  # asked in this order (one per class, or one for all)
        self._by_rank: list[Index] = []  # class rank → the index its waiters go in
        self._stale = 0  # waiters gone from the middle of an index (see _compact)
        self._accounts: dict[str, _Account] = {}
        self._holds: dict[Hold, None] = {}  # the holds out now (insertion order: oldest first)
        self.waiting = [0, 0, 0]  # live waiters by class rank
        self.handed = 0  # slots handed to waiters
        self.rescued = 0  # of which by the starvation rule
        self._sync()

    # -- the waiters -----------------------------------------------------------------------------
    def push(self, program: Program | None = None) -> Waiter:
        """Queue a call of `program` (INTERNAL if None) for the next free slot."""
        program = program or INTERNAL
        if self._version != self.scheduler.version:
            self._sync()
        now = self.clock()
        self._seq += 1
        w = Waiter(asyncio.get_running_loop().create_future(), program, self._seq, now)
        account = self._accounts.get(program.id)
        if account is None:
            account = self._account(program.id, now)
        account.waiting += 1
        account.last = now
        rank = CLASS_RANK[program.class_]
        self.waiting[rank] += 1
        self._arrivals.append(w)
        self._by_rank[rank].push(w)
        if self.preemptible and self._holds:
            self._offer_preemption(w)
        return w

    def discard(self, waiter: Waiter) -> None:
        """A waiter went away before it was served (its call was cancelled)."""
        if waiter.live:
            self._taken(waiter)
            self._stale += 1

    def hand_over(self, hold: Hold | None, now: float | None = None) -> bool:
        """A slot is given back (with its `hold`, if it had one): hand it to the next waiter.
        False when nobody waits: the caller then frees the slot."""
        if now is None:
            now = self.clock()
        if hold is not None:
            self._charge(hold, now)
        if self._version != self.scheduler.version:
            self._sync()
        while True:
            w = self._pick(now)
            if w is None:
                return False
            if w.future.done():  # cancelled, not resumed yet: its acquire() will see it was not served
                continue
            w.future.set_result(self.hold(w.program, now))
            self.handed += 1
            return True

    def hold(self, program: Program | None, now: float | None = None) -> Hold:
        """A hold for a slot taken now (handed over, or taken directly on a preemptible deployment)."""
        if now is None:
            now = self.clock()
        h = Hold(program or INTERNAL, now)
        account = self._accounts.get(h.program.id) or self._account(h.program.id, now)
        account.last = now
        account.running += 1
        account.since_sum += now
        self._holds[h] = None
        return h

    # -- what the pick looks at ---------------------------------------------------------------------
    def service(self, program_id: str, now: float | None = None) -> float:
        """Seconds `program_id`'s calls have held this deployment's slots (running ones included)."""
        account = self._accounts.get(program_id)
        if account is None:
            return 0.0
        return account.service(self.clock() if now is None else now)

    def _service(self, program_id: str, now: float) -> float:
        account = self._accounts.get(program_id)
        return 0.0 if account is None else account.service(now)

    def _pick(self, now: float) -> Waiter | None:
        waiting = self.waiting
        live = waiting[0] + waiting[1] + waiting[2]
        if not live:
            return None
        if self._stale > 2 * live + _COMPACT_MIN:
            self._compact()  # many cancelled or rescued waiters left in the indices: rebuild them
        arrivals = self._arrivals
        if len(arrivals) > 2 * live + _COMPACT_MIN:  # many served out of order: keep the live ones
            arrivals = self._arrivals = deque(w for w in arrivals if w.live)
        while not arrivals[0].live:
            arrivals.popleft()
        oldest = arrivals[0]
        if now - oldest.arrived >= self.scheduler.starvation_s:
            arrivals.popleft()
            self._taken(oldest)
            self._stale += 1  # still in its index
            self.rescued += 1
            return oldest
        for index in self._indices:
            w = index.pop(now)
            if w is not None:
                self._taken(w)
                return w
        return None

    def _taken(self, w: Waiter) -> None:
        w.live = False
        self.waiting[CLASS_RANK[w.program.class_]] -= 1
        account = self._accounts.get(w.program.id)
        if account is not None:
            account.waiting -= 1

    # -- attained service ----------------------------------------------------------------------------
    def _account(self, program_id: str, now: float) -> _Account:
        account = self._accounts.get(program_id)
        if account is None:
            if len(self._accounts) >= MAX_PROGRAMS:
                self._forget_idle()
            account = self._accounts[program_id] = _Account(now)
        account.last = now
        return account

    def _charge(self, hold: Hold, now: float) -> None:
        if hold not in self._holds:
            return  # given back twice: charged already
        del self._holds[hold]
        account = self._accounts.get(hold.program.id)
        if account is None:
            return
        account.attained += max(0.0, now - hold.since)
        account.running -= 1
        account.since_sum = account.since_sum - hold.since if account.running else 0.0
        account.last = now

    def _forget_idle(self) -> None:
        """Drop the service records of the idle programs seen longest ago, down to half the cap.
        (A program with a waiter or a running call is never forgotten: its key may be in a heap.)"""
        idle = [(a.last, pid) for pid, a in self._accounts.items() if not a.running and not a.waiting]
        for _, pid in heapq.nsmallest(max(0, len(self._accounts) - MAX_PROGRAMS // 2), idle):
            del self._accounts[pid]

    # -- preemption (the hook) -------------------------------------------------------------------
    def _offer_preemption(self, w: Waiter) -> None:
        """A waiter arrived at a full preemptible deployment: the least urgent running call of a
        class below the waiter's (the longest-running of them) is asked to yield."""
        rank = w.program.class_.rank
        victim: Hold | None = None
        for h in self._holds:  # oldest first
            r = h.program.class_.rank
            if r > rank and not h.preempt_requested and (victim is None or r > victim.program.class_.rank):
                victim = h
        if victim is not None:
            victim.request_preemption()

    # -- settings ----------------------------------------------------------------------------------
    def _sync(self) -> None:
        """(Re)build the indices for the scheduler's policy now, from the live waiters."""
        self._version = self.scheduler.version
        self._policy = self.scheduler.policy
        self._compact()

    def _compact(self) -> None:
        live = [w for w in self._arrivals if w.live]
        self._arrivals = deque(live)
        self._stale = 0
        count = 1 if self._policy is Policy.FIFO else len(ProgramClass)
        self._indices = [make_index(self._policy, self._service) for _ in range(count)]
        self._by_rank = self._indices * 3 if count == 1 else list(self._indices)
        for w in live:
            self._by_rank[CLASS_RANK[w.program.class_]].push(w)

    # -- reading ------------------------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        return self._policy

    def waiting_by_class(self) -> dict[str, int]:
        return {c.value: self.waiting[c.rank] for c in ProgramClass}

    def oldest_wait(self, now: float | None = None) -> float:
        """Seconds the longest-waiting call has waited (0 with nobody waiting)."""
        now = self.clock() if now is None else now
        for w in self._arrivals:
            if w.live:
                return max(0.0, now - w.arrived)
        return 0.0

    def snapshot(self, top: int = 10) -> dict[str, Any]:
        now = self.clock()
        accounts = heapq.nlargest(top, self._accounts.items(), key=lambda kv: kv[1].service(now))
        return {
            "waiting": self.waiting_by_class(),
            "oldest_wait_s": round(self.oldest_wait(now), 3),
            "handed_over": self.handed,
            "starvation_rescues": self.rescued,
            "programs": [
                {"id": pid, "attained_s": round(a.service(now), 6), "running": a.running, "waiting": a.waiting}
                for pid, a in accounts
            ],
        }
