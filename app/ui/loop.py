"""The app's event loop: qasync's QEventLoop, plus what asyncio's own loops do on start.

qasync does not install asyncio's async-generator hooks, so an async generator left
unfinished (a stream the user cancelled, an HTTP body read only in part) would be
finalised by the garbage collector outside the loop ("async generator ignored
GeneratorExit"). With the hooks, asyncio closes it on the loop, as it does everywhere else.

qasync runs asyncio's callbacks from Qt timers, so whatever spins Qt's event loop while the
asyncio loop is not running (between two `run_until_complete` calls: test harnesses, a
modal dialog before the loop starts) runs them with no running loop, and a task stepped
there fails at its first `asyncio.wait_for` ("no running event loop"). Such a callback runs
with this loop set as the running one, as it would inside `run_forever`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from PySide6.QtWidgets import QApplication


def make_loop(app: QApplication) -> asyncio.AbstractEventLoop:
    import qasync

    class EventLoop(qasync.QEventLoop):  # type: ignore[misc, name-defined]
        def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> Any:
            return super().call_later(delay, self._as_running, callback, *args, context=context)

        def _as_running(self, callback: Any, *args: Any) -> Any:
            if asyncio.events._get_running_loop() is not None:
                return callback(*args)
            asyncio.events._set_running_loop(self)
            try:
                return callback(*args)
            finally:
                asyncio.events._set_running_loop(None)

    loop = EventLoop(app)
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
        finalizer=loop._asyncgen_finalizer_hook,
    )  # type: ignore[attr-defined]
    return loop
