"""The durable-execution engine under agent runs: DBOS, on a SQLite system database of its own.

DBOS is a library: workflows and steps are async functions on our own event loop, and it
keeps each step's result in its system database so that a run interrupted anywhere (a
suspend, a kill -9 of the whole process) goes on from its last completed step. On one machine
that database is a SQLite file beside ours; across machines it is PostgreSQL.

Imported on first use: `serve` pays nothing for it until an agent runs (or one was running
when the process stopped, in which case the runtime starts the engine right after start-up so
DBOS can recover it).

The system database is opened by an engine of ours rather than by URL: WAL and
synchronous=NORMAL, as our own database, which survives kill -9 (only a power cut can lose
the last commit) and measured 1.4 to 1.6 times the step throughput of DBOS's default rollback journal.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.kernel.agents.workflows import RunHost

log = logging.getLogger(__name__)

# Runs are recovered only by an engine of the same application version. Fixed, so that an
# upgrade of ByenatOS resumes the runs its predecessor left; bump it when the workflow's
# sequence of steps changes in a way old runs cannot replay.
APPLICATION_VERSION = "byenatos-agents-1"
EXECUTOR_THREADS = 8


class _QuietCancellations(logging.Filter):
    """Drops DBOS's error records for runs that were cancelled on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or "Cancelled" not in type(error).__name__


class DurableEngine:
    """Starts, cancels, resumes and messages agent runs. One per process (DBOS is a singleton)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._dbos: Any = None
        self._workflows: Any = None
        self._sql: Any = None
        self.tasks: dict[int, asyncio.Task[Any]] = {}  # pid → the task executing its run here
        self._lock = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._dbos is not None

    async def start(self, host: RunHost) -> None:
        async with self._lock:
            if self._dbos is not None:
                return
            # The imports and DBOS's schema set-up (~0.3 s the first time) in a thread; launch()
            # itself on the loop's thread, so that DBOS runs recovered workflows on this loop.
            await asyncio.to_thread(self._prepare)
            from dbos import DBOS

            from app.kernel.agents import workflows

            workflows.HOST = host
            self._workflows = workflows
            DBOS(config={
                "name": "byenatos",
                "system_database_url": f"sqlite:///{self.db_path}",
                "system_database_engine": self._sql,
                "run_admin_server": False,
                "log_level": "ERROR",
                "application_version": APPLICATION_VERSION,
                "executor_id": "local",
                # DBOS's thread pool becomes the loop's default executor; unbounded by default, it
                # would start a thread per concurrent step, all contending for SQLite's write lock.
                "max_executor_threads": EXECUTOR_THREADS,
            })
            DBOS.launch()  # recovers the runs a previous process left unfinished
            self._dbos = DBOS

    def _prepare(self) -> None:
        import dbos  # noqa: F401  (the import cost, off the loop)
        import sqlalchemy as sa
        from sqlalchemy import event

        from app.kernel.agents import workflows  # noqa: F401  (registers the workflow and steps)

        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(f"sqlite:///{self.db_path}")

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            conn.isolation_level = "IMMEDIATE"  # as DBOS's own SQLite engine: writers serialised
            for pragma in ("busy_timeout=30000", "foreign_keys=ON", "journal_mode=WAL", "synchronous=NORMAL"):
                conn.execute(f"PRAGMA {pragma}")

        self._sql = engine
        # DBOS warns of every cancelled task, and logs an error with a traceback when the outcome
        # it waits for is a cancellation: here those are a suspend, a kill or a shutdown.
        dbos_log = logging.getLogger("dbos")
        dbos_log.setLevel(logging.ERROR)
        if not any(isinstance(f, _QuietCancellations) for f in dbos_log.filters):
            dbos_log.addFilter(_QuietCancellations())

    def workflow_id(self, pid: int) -> str:
        return f"agent-{pid}"

    async def start_run(self, pid: int) -> None:
        """Start `pid`'s run; durable when this returns (it runs to the end across restarts)."""
        from dbos import SetWorkflowID

        async def start() -> None:
            with SetWorkflowID(self.workflow_id(pid)):
                await self._dbos.start_workflow_async(self._workflows.agent_run, pid)

        # From a tool step (an agent spawning a child) DBOS would take it for a child workflow
        # started inside a step, which it refuses: a run of its own is started from a fresh
        # context (the parent is our process table's business, not DBOS's).
        await asyncio.get_running_loop().create_task(start(), context=contextvars.Context())

    async def cancel(self, pid: int, *, now: bool = True) -> None:
        """Stop the run: DBOS will not resume it by itself. `now`: also interrupt the step in
        progress (it is made again on resume) instead of letting it finish."""
        await self._dbos.cancel_workflow_async(self.workflow_id(pid))
        task = self.tasks.get(pid)
        if now and task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def track(self, pid: int, task: asyncio.Task[Any]) -> None:
        """`task` executes `pid`'s run here (until it is done)."""
        self.tasks[pid] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self.tasks.get(pid) is done:
                del self.tasks[pid]

        task.add_done_callback(forget)

    async def resume(self, pid: int) -> None:
        """Go on from the last completed step of a cancelled run. The execution that stopped
        is waited for first: until it has unwound, DBOS may still record its end, which
        would race the resumed execution's."""
        old = self.tasks.get(pid)
        if old is not None and not old.done():
            await asyncio.wait([old], timeout=10.0)
        await self._dbos.resume_workflow_async(self.workflow_id(pid))

    async def notify(self, pid: int, seq: int) -> None:
        """Wake a run waiting for its next message."""
        from app.kernel.agents.workflows import INBOX_TOPIC

        await self._dbos.send_async(self.workflow_id(pid), seq, INBOX_TOPIC)

    async def status(self, pid: int) -> str | None:
        found = await self._dbos.get_workflow_status_async(self.workflow_id(pid))
        return None if found is None else str(found.status)

    async def stop(self) -> None:
        """Stop executing runs here without cancelling them: they stay pending and the next
        engine (this process or the next) recovers them from their last completed step."""
        async with self._lock:
            if self._dbos is None:
                return
            tasks = [t for t in self.tasks.values() if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            self.tasks.clear()
            dbos, self._dbos = self._dbos, None
            loop = asyncio.get_running_loop()
            # DBOS made its thread pool this loop's default executor at launch and shuts it down
            # in destroy(): give the loop a new default first (every asyncio.to_thread of the
            # process goes there, and the kernel's other writers go on while DBOS shuts down:
            # after, the personal audit's flush met the shut pool), then destroy from a thread
            # of our own.
            loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="asyncio"))
            with ThreadPoolExecutor(1, thread_name_prefix="dbos-destroy") as pool:
                await loop.run_in_executor(pool, functools.partial(dbos.destroy, destroy_registry=False))
            if self._workflows is not None:
                self._workflows.HOST = None
            if self._sql is not None:
                self._sql.dispose()
                self._sql = None
