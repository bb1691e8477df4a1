"""The orders a deployment's waiters can be served in.

Each policy is an *index* over the waiters of one class (interactive, normal, background; the
queue asks the classes in that order, except under FIFO, where one index holds everyone):
`push` a waiter, `pop` the one to serve next. Waiters that went away (cancelled, or taken by
the starvation rule) stay in an index until they reach its front and are skipped there, so
neither operation ever searches.

- FIFO: arrival order, classes ignored (how Ollama and LM Studio queue).
- ROUND_ROBIN: programs take turns, one call each; a program's own calls in arrival order.
- PRIORITY: the program's priority (higher first), then arrival.
- LAS: least attained service first (Autellix's PLAS, arXiv 2502.13965): the program whose
  calls have held this deployment's slots for the least time so far, its running calls
  included, goes first; ties in arrival order. Short programs and newcomers pass long
  ones without anyone having to know in advance how long a program is. The default.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from app.kernel.errors import BadRequestError

if TYPE_CHECKING:
    from app.kernel.scheduler.waiters import Waiter


class Policy(enum.StrEnum):
    FIFO = "fifo"
    ROUND_ROBIN = "round_robin"
    PRIORITY = "priority"
    LAS = "las"

    @classmethod
    def parse(cls, value: object) -> Policy:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise BadRequestError(f"unknown scheduler policy {value!r}; use one of {names}") from None


#: (program id, now) → the program's attained service on this deployment, in seconds
Service = Callable[[str, float], float]


class Index(Protocol):
    def push(self, waiter: Waiter) -> None: ...

    def pop(self, now: float) -> Waiter | None:
        """The next live waiter, removed; None if there is none."""
        ...


class FifoIndex:
    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: deque[Waiter] = deque()

    def push(self, waiter: Waiter) -> None:
        self._waiters.append(waiter)

    def pop(self, now: float) -> Waiter | None:
        waiters = self._waiters
        while waiters:
            w = waiters.popleft()
            if w.live:
                return w
        return None


class RoundRobinIndex:
    """A turn per program: the program served goes to the back of the line if it has more."""

    __slots__ = ("_programs", "_turns")

    def __init__(self) -> None:
        self._programs: dict[str, deque[Waiter]] = {}
        self._turns: deque[str] = deque()

    def push(self, waiter: Waiter) -> None:
        pid = waiter.program.id
        own = self._programs.get(pid)
        if own is None:
            own = self._programs[pid] = deque()
            self._turns.append(pid)
        own.append(waiter)

    def pop(self, now: float) -> Waiter | None:
        programs, turns = self._programs, self._turns
        while turns:
            pid = turns.popleft()
            own = programs[pid]
            _drop_dead(own)
            if not own:
                del programs[pid]
                continue
            w = own.popleft()
            _drop_dead(own)
            if own:
                turns.append(pid)
            else:
                del programs[pid]
            return w
        return None


class PriorityIndex:
    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Waiter]] = []

    def push(self, waiter: Waiter) -> None:
        heapq.heappush(self._heap, (-waiter.program.priority, waiter.seq, waiter))

    def pop(self, now: float) -> Waiter | None:
        heap = self._heap
        while heap:
            w = heapq.heappop(heap)[2]
            if w.live:
                return w
        return None


class LasIndex:
    """Programs in a heap by (attained service, arrival of their oldest waiter).

    A program's service only grows (its calls hold slots; none is ever un-served), so a key in
    the heap is never above the program's true key: the top is re-keyed until its stored key
    is its true one, and it is then the least of all. Only programs whose service changed since
    they were keyed (their calls ran meanwhile: at most the deployment's limit of them) are
    re-keyed, so a pop costs O(log n) plus a few re-keys.
    """

    __slots__ = ("_heap", "_programs", "_service")

    def __init__(self, service: Service) -> None:
        self._service = service
        self._programs: dict[str, deque[Waiter]] = {}
        self._heap: list[tuple[float, int, str]] = []  # (service, head's seq, program id); one per program

    def push(self, waiter: Waiter) -> None:
        pid = waiter.program.id
        own = self._programs.get(pid)
        if own is None:
            self._programs[pid] = deque((waiter,))
            heapq.heappush(self._heap, (self._service(pid, waiter.arrived), waiter.seq, pid))
        else:
            own.append(waiter)

    def pop(self, now: float) -> Waiter | None:
        heap, programs, service = self._heap, self._programs, self._service
        while heap:
            key, seq, pid = heap[0]
            own = programs[pid]
            _drop_dead(own)
            if not own:
                heapq.heappop(heap)
                del programs[pid]
                continue
            true_key, head = service(pid, now), own[0].seq
            if true_key != key or head != seq:  # it was served since it was keyed: key it again
                heapq.heapreplace(heap, (true_key, head, pid))
                continue
            w = own.popleft()
            _drop_dead(own)
            if own:
                heapq.heapreplace(heap, (true_key, own[0].seq, pid))
            else:
                heapq.heappop(heap)
                del programs[pid]
            return w
        return None


def make_index(policy: Policy, service: Service) -> Index:
    if policy is Policy.LAS:
        return LasIndex(service)
    if policy is Policy.PRIORITY:
        return PriorityIndex()
    if policy is Policy.ROUND_ROBIN:
        return RoundRobinIndex()
    return FifoIndex()


def _drop_dead(waiters: deque[Waiter]) -> None:
    while waiters and not waiters[0].live:
        waiters.popleft()
