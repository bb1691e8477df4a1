"""A file watcher over the indexed folders (watchfiles: inotify, FSEvents, ReadDirectoryChangesW).

watchfiles' Rust watcher runs in a thread of ours: it is watching once `start()` returns (the
watches are placed when it is built), which `awatch` would not tell us, and it stops within one
step (50 ms) of `stop()`. Each burst of changes (debounced) reaches the loop as one set of paths.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEBOUNCE_MS = 400  # an editor's save is several events; a copy of 1,000 files is a few batches
STEP_MS = 50
TIMEOUT_MS = 1_000


class FolderWatcher:
    def __init__(self, folders: list[Path], on_changes: Callable[[set[str]], None]) -> None:
        self.folders = folders
        self._on_changes = on_changes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._notify: Any = None
        self.error: str | None = None

    def start(self) -> None:
        from watchfiles.main import RustNotify

        loop = asyncio.get_running_loop()
        force_polling = bool(os.environ.get("WATCHFILES_FORCE_POLLING"))
        # Missing folders (an unplugged disk) are not watched: RustNotify refuses them.
        paths = [str(f) for f in self.folders if f.is_dir()]
        if not paths:
            return
        self._notify = RustNotify(paths, False, force_polling, 300, True, True)
        self._thread = threading.Thread(target=self._run, args=(loop,), name="documents-watcher", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while not self._stop.is_set():
                raw = self._notify.watch(DEBOUNCE_MS, STEP_MS, TIMEOUT_MS, self._stop)
                if raw == "stop":
                    return
                if isinstance(raw, set) and raw:
                    paths = {path for _, path in raw}
                    try:
                        loop.call_soon_threadsafe(self._on_changes, paths)
                    except RuntimeError:  # the loop closed under us
                        return
        except Exception as e:  # the watcher broke (too many watches…): say so, the rescans still work
            self.error = f"the file watcher stopped: {e}"
            log.warning("%s", self.error)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        if self._notify is not None:
            self._notify.close()
            self._notify = None
