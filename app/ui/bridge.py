"""Kernel events → Qt signals.

The kernel publishes typed events on its async bus; this QObject subscribes on the same
(qasync) loop and re-emits each as a Qt signal, so widgets connect to signals and never
touch the bus. Events are routed by class name, so events the kernel adds later (socket
swaps, personalization) arrive on `event` even before a dedicated signal exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from PySide6.QtCore import QObject, Signal

from app.kernel.events import Event, EventBus

log = logging.getLogger(__name__)

# event class name → name of the dedicated signal (besides `event`, which gets everything)
ROUTES = {
    "RequestFinished": "requestFinished",
    "ModelsChanged": "modelsChanged",
    "HardwareSample": "hardwareSample",
    "ProviderHealthChanged": "healthChanged",
    "HealthChanged": "healthChanged",
    "SwapStarted": "socketChanged",
    "SwapFinished": "socketChanged",
    "SwapFailed": "socketChanged",
    "ModelSwapped": "socketChanged",
    "ModelLoading": "residencyChanged",
    "ModelLoaded": "residencyChanged",
    "ModelEvicted": "residencyChanged",
    "ModelUnloaded": "residencyChanged",
    "ModelLoadFailed": "residencyChanged",
    "DownloadProgress": "downloadProgress",
    "PSPChanged": "personalChanged",
    "PersonalDataChanged": "personalChanged",
    "HinataAdded": "personalChanged",
}


class KernelBridge(QObject):
    event = Signal(object)  # every event
    requestFinished = Signal(object)
    modelsChanged = Signal(object)
    hardwareSample = Signal(object)
    healthChanged = Signal(object)
    socketChanged = Signal(object)
    residencyChanged = Signal(object)
    downloadProgress = Signal(object)
    personalChanged = Signal(object)

    def __init__(self, bus: EventBus, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bus = bus
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def start(self) -> None:
        if self._task is None:
            # Subscribe now (not in the task) so no event published after start() is missed.
            sub = self._bus.subscribe(maxsize=5000)
            self._task = asyncio.get_running_loop().create_task(self._pump(sub), name="kernel-bridge")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def emit_event(self, event: Event) -> None:
        """Deliver one event as signals (also how tests feed the UI without a kernel)."""
        self.event.emit(event)
        route = ROUTES.get(type(event).__name__)
        if route is not None:
            getattr(self, route).emit(event)
        self.delivered += 1

    async def _pump(self, sub) -> None:
        async for event in sub:
            try:
                self.emit_event(event)
            except Exception:  # a broken slot must not stop the other widgets' updates
                log.exception("delivering %s to the UI failed", type(event).__name__)
