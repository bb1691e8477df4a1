"""The app's event loop: qasync's QEventLoop, plus what asyncio's own loops do on start.

qasync does not install asyncio's async-generator hooks, so an async generator left
unfinished (a stream the user cancelled, an HTTP body read only in part) would be
finalised by the garbage collector outside the loop ("async generator ignored
GeneratorExit"). With the hooks, asyncio closes it on the loop, as it does everywhere else.
"""

from __future__ import annotations

import asyncio
import sys

from PySide6.QtWidgets import QApplication


def make_loop(app: QApplication) -> asyncio.AbstractEventLoop:
    import qasync

    loop = qasync.QEventLoop(app)
    sys.set_asyncgen_hooks(
        firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
        finalizer=loop._asyncgen_finalizer_hook,
    )  # type: ignore[attr-defined]
    return loop
