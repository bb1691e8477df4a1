"""The scheduler for LLM calls: who goes next on a deployment whose slots are all busy.

- `program.py`: who a call belongs to (`Program`, `current_program`, `run_as`);
- `policies.py`: FIFO, ROUND_ROBIN, PRIORITY and LAS (least attained service, the default);
- `queue.py`: one deployment's wait queue (`WaitQueue`) and the attained service of its programs;
- `waiters.py`: what a queue keeps: a waiting call (`Waiter`), a held slot (`Hold`);
- `service.py`: what the queues share (`Scheduler`: policy, starvation bound, clock, the
  programs apps run as).

Below the socket in the import graph: the router imports this package, never the reverse.
See docs/scheduler.md.
"""

from app.kernel.scheduler.policies import Policy
from app.kernel.scheduler.program import (
    INTERNAL,
    PRIORITY_HEADER,
    Program,
    ProgramClass,
    current_program,
    run_as,
)
from app.kernel.scheduler.queue import WaitQueue
from app.kernel.scheduler.service import Scheduler
from app.kernel.scheduler.waiters import Hold, Waiter, current_hold

__all__ = [
    "INTERNAL",
    "PRIORITY_HEADER",
    "Hold",
    "Policy",
    "Program",
    "ProgramClass",
    "Scheduler",
    "WaitQueue",
    "Waiter",
    "current_hold",
    "current_program",
    "run_as",
]
