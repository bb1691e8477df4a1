"""The tray agent: an icon showing state (idle / serving / error) and a menu to switch models,
pause personalization, open the assistant or the window, and quit.

Where the desktop has no tray (some Wayland sessions, bare X), `available` is False: the app
keeps running and the window says so.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from app.ui.bridge import AutoSwap
from app.ui.runtime import DesktopRuntime
from app.ui.tasks import spawn
from app.ui.theme import icon
from app.ui.widgets.text import auto_swap_sentence, model_label, model_label_for

MAX_MENU_MODELS = 12  # more go into a "More models" submenu
SERVING_FOR = 3.0  # seconds the icon shows "serving" after a request finished


class TrayAgent(QObject):
    openWindow = Signal()
    openAssistant = Signal()
    openAbout = Signal()
    quitRequested = Signal()
    message = Signal(str)  # readable outcome of a tray action (errors included)

    def __init__(self, runtime: DesktopRuntime, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.available = QSystemTrayIcon.isSystemTrayAvailable()
        self.state = "idle"
        self.icon = QSystemTrayIcon(icon("tray-idle"), self)
        self.icon.setToolTip("ByenatOS")
        self.menu = QMenu()
        self.model_actions: dict[str, QAction] = {}
        self._group = QActionGroup(self)
        self._group.setExclusive(True)
        self._last_request = 0.0
        self._last_error = ""
        self._idle_timer = QTimer(self)
        self._idle_timer.setSingleShot(True)
        self._idle_timer.timeout.connect(self._settle)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._clicked)
        self.menu.aboutToShow.connect(self.rebuild)
        runtime.bridge.requestFinished.connect(self._on_request)
        runtime.bridge.modelsChanged.connect(self.rebuild)
        runtime.bridge.socketChanged.connect(self.rebuild)
        runtime.bridge.autoSwapped.connect(self._on_auto_swap)
        runtime.gatewayChanged.connect(self._settle)
        runtime.ready.connect(self.rebuild)
        self.rebuild()

    def show(self) -> bool:
        if self.available:
            self.icon.show()
        return self.available

    def hide(self) -> None:
        self.icon.hide()

    def close(self) -> None:
        """Take the icon down and free the menu. The icon does not own its context menu, so the
        menu must outlive it: unhook it first, never leave the garbage collector to pick an order."""
        self.icon.hide()
        self.icon.setContextMenu(None)
        self.menu.deleteLater()

    # -- menu ---------------------------------------------------------------------------------
    def rebuild(self, *_: object) -> None:
        menu = self.menu
        menu.clear()
        for a in self._group.actions():
            self._group.removeAction(a)
        self.model_actions.clear()
        current = self.runtime.current_model_id()
        header = menu.addAction(f"ByenatOS — {self.status_text()}")
        header.setEnabled(False)
        menu.addSeparator()
        models = sorted(self.runtime.models(), key=lambda m: (not m.local, m.id))
        if not models:
            none = menu.addAction("No models yet — open the window to add one")
            none.setEnabled(False)
        more = menu.addMenu("More models") if len(models) > MAX_MENU_MODELS else None
        for i, spec in enumerate(models):
            target = menu if i < MAX_MENU_MODELS or more is None else more
            label = f"{spec.display_name or spec.name}  ·  {spec.provider}"
            action = target.addAction(label)
            action.setCheckable(True)
            action.setChecked(spec.id == current)
            action.setData(spec.id)
            action.triggered.connect(lambda _c=False, mid=spec.id: self.switch(mid))
            self._group.addAction(action)
            self.model_actions[spec.id] = action
        menu.addSeparator()
        self.pause_action = menu.addAction("Pause personalization")
        self.pause_action.setCheckable(True)
        # Only once the kernel runs: reading `kernel.personal` builds the service (the menu is
        # built while the window comes up, before the kernel starts).
        personal = getattr(self.runtime.kernel, "personal", None) if self.runtime.started else None
        self.pause_action.setEnabled(personal is not None)
        if personal is not None:
            self.pause_action.setChecked(bool(getattr(personal, "paused", False)))
        self.pause_action.toggled.connect(self._pause_personalization)
        menu.addAction("Open assistant", self.openAssistant.emit)
        menu.addAction("Open ByenatOS", self.openWindow.emit)
        menu.addSeparator()
        menu.addAction("About ByenatOS", self.openAbout.emit)
        menu.addAction("Quit ByenatOS", self.quitRequested.emit)

    def switch(self, model_id: str) -> Any:
        async def go() -> None:
            spec = await self.runtime.swap(model_id)
            self.message.emit(f"Now serving {model_label(spec)}")
            self.rebuild()

        def failed(text: str) -> None:
            self.message.emit(f"Could not switch to {model_id}: {text}")
            self.rebuild()  # the check mark goes back to the model really in the socket

        return spawn(go(), on_error=failed, name="tray-switch")

    def _pause_personalization(self, paused: bool) -> None:
        personal = getattr(self.runtime.kernel, "personal", None)
        setter = getattr(personal, "set_paused", None)
        if setter is None:
            return
        try:
            setter(paused)
        except Exception as e:
            self.message.emit(f"Could not change personalization: {e}")

    # -- state --------------------------------------------------------------------------------
    def status_text(self) -> str:
        rt = self.runtime
        if rt.gateway_state.value == "failed":
            return "gateway stopped"
        if self.state == "error":
            return "last request failed"
        model = rt.current_model_id()
        return f"serving {self.label(model)}" if model else "no model"

    def label(self, model_id: str | None) -> str:
        return model_label_for(model_id, self.runtime.all_models())

    def auto_swap_message(self, notice: AutoSwap) -> str:
        return auto_swap_sentence(notice, self.label, name_alias=True)

    def _on_auto_swap(self, notice: AutoSwap) -> None:
        """Nobody asked for this swap: say so (a balloon; the window's status bar too)."""
        self.rebuild()
        self.message.emit(self.auto_swap_message(notice))

    def set_state(self, state: str) -> None:
        self.state = state
        self.icon.setIcon(icon(f"tray-{state}"))
        tip = f"ByenatOS — {self.status_text()}"
        if self._last_error and state == "error":
            tip += f"\n{self._last_error}"
        self.icon.setToolTip(tip)

    def _on_request(self, event: Any) -> None:
        self._last_request = time.monotonic()
        if event.outcome == "ok":
            self._last_error = ""
            self.set_state("serving")
            self._idle_timer.start(int(SERVING_FOR * 1000))
        elif event.outcome != "cancelled":
            self._last_error = f"{event.model}: {event.outcome}"
            self.set_state("error")

    def _settle(self, *_: object) -> None:
        if self.runtime.gateway_state.value == "failed":
            self.set_state("error")
        elif self.state != "error":
            self.set_state("idle")

    def _clicked(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.openWindow.emit()
        elif reason == QSystemTrayIcon.ActivationReason.MiddleClick:
            self.openAssistant.emit()
