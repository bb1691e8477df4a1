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
import time
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.kernel import events as kernel_events
from app.kernel.events import Event, EventBus

log = logging.getLogger(__name__)

# HOOK for the kernel's typed event for automatic swaps (issue 19, must-fix 4). When the kernel
# defines one of these classes, it alone announces automatic swaps; until then they are read
# off SwapFinished's `trigger`. Field names are read leniently (from_model/previous, reason/detail).
AUTO_SWAP_EVENT_NAMES = ("AutoSwapped", "AutomaticSwap", "SocketAutoSwapped", "AutoSwap")
MANUAL_TRIGGERS = ("manual", "")

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
    "SocketConfigured": "socketChanged",
    "AliasConfigured": "socketChanged",
    "SocketChanged": "socketChanged",
    **{name: "socketChanged" for name in AUTO_SWAP_EVENT_NAMES},
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


def typed_auto_swaps() -> bool:
    """Does this kernel publish a typed event for automatic swaps?"""
    return any(isinstance(getattr(kernel_events, n, None), type) for n in AUTO_SWAP_EVENT_NAMES)


def _field(event: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(event, n, None)
        if v is not None:
            return v
    return default


@dataclass(frozen=True, slots=True)
class AutoSwap:
    """An automatic swap as the UI tells it: from what, to what, when, and why."""

    alias: str
    from_model: str | None
    to_model: str
    trigger: str
    reason: str  # the kernel's own words for why ("" when it gives none)
    detail: str  # what was last known about the old model's failure ("" if nothing)
    ts: float


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
    autoSwapped = Signal(object)  # AutoSwap: a swap nobody asked for (error, latency, memory, rules)
    # Not a kernel event: a widget asking the window to show a view (the popup's "Add a model…").
    openViewRequested = Signal(str)

    def __init__(self, bus: EventBus, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bus = bus
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.typed_auto_swaps = typed_auto_swaps()
        self.auto_swaps: dict[str, AutoSwap] = {}  # the latest automatic swap per alias
        self.failing: dict[str, str] = {}  # model id → why it was last reported unhealthy

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
        name = type(event).__name__
        if name == "HealthChanged":
            if getattr(event, "ok", True):
                self.failing.pop(getattr(event, "model", ""), None)
            else:
                self.failing[getattr(event, "model", "")] = getattr(event, "detail", "") or ""
        notice = self.auto_swap_of(event)
        if notice is not None:
            self.auto_swaps[notice.alias] = notice  # readable by the slots of socketChanged too
        elif name == "SwapFinished" and getattr(event, "trigger", "manual") in MANUAL_TRIGGERS:
            self.auto_swaps.pop(getattr(event, "alias", "default"), None)  # the user chose again
        self.event.emit(event)
        route = ROUTES.get(name)
        if route is not None:
            getattr(self, route).emit(event)
        if notice is not None:
            self.autoSwapped.emit(notice)
        self.delivered += 1

    def auto_swap_of(self, event: Event) -> AutoSwap | None:
        """The automatic swap an event announces, or None."""
        name = type(event).__name__
        if name in AUTO_SWAP_EVENT_NAMES:
            pass
        elif name == "SwapFinished" and not self.typed_auto_swaps:
            if getattr(event, "trigger", "manual") in MANUAL_TRIGGERS:
                return None
        else:
            return None
        old = _field(event, "from_model", "previous", "old_model")
        trigger = str(_field(event, "trigger", default="automatic"))
        reason = str(_field(event, "reason", "because", default="") or "")
        return AutoSwap(
            alias=_field(event, "alias", default="default"),
            from_model=old,
            to_model=_field(event, "to_model", "current", "model", default=""),
            trigger=trigger,
            reason=reason,
            detail=str(_field(event, "detail", default="") or self.failing.get(old or "", "")),
            ts=float(_field(event, "ts", default=time.time())),
        )

    async def _pump(self, sub) -> None:
        async for event in sub:
            try:
                self.emit_event(event)
            except Exception:  # a broken slot must not stop the other widgets' updates
                log.exception("delivering %s to the UI failed", type(event).__name__)
