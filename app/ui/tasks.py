"""Running kernel calls from Qt slots: every call is an asyncio task on the qasync loop.

`spawn` keeps a reference (so tasks are not garbage-collected mid-flight) and turns any
failure into one readable line for a banner — a traceback never reaches the user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from app.kernel.errors import ByenatosError

log = logging.getLogger(__name__)

_running: set[asyncio.Task[Any]] = set()


def readable(exc: BaseException) -> str:
    """One line a user can act on."""
    if isinstance(exc, ByenatosError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "it took too long and was stopped"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def spawn(
    coro: Coroutine[Any, Any, Any], *, on_error: Callable[[str], None] | None = None, name: str | None = None
) -> asyncio.Task[Any]:
    task = asyncio.get_event_loop().create_task(coro, name=name)
    _running.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _running.discard(t)
        if t.cancelled():
            return
        exc = t.exception()
        if exc is None:
            return
        if not isinstance(exc, ByenatosError):
            log.error("UI task %s failed", t.get_name(), exc_info=exc)
        if on_error is not None:
            on_error(readable(exc))

    task.add_done_callback(done)
    return task


def running_tasks() -> int:
    return len(_running)


async def cancel_all() -> None:
    tasks = list(_running)
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
