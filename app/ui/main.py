"""`byenatos` with no arguments: the desktop app.

A QApplication on a qasync event loop hosts the same kernel and gateway as `byenatos serve`.
The window shows first and the kernel starts right after (start-up time is a feature);
closing the window keeps ByenatOS in the tray, Quit stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from app.kernel import heap
from app.kernel.config import Paths
from app.ui import tasks
from app.ui.hotkey import GlobalHotkey
from app.ui.instance import SingleInstance, running_address, running_elsewhere, server_name
from app.ui.loop import make_loop
from app.ui.main_window import MainWindow
from app.ui.popup import AssistantPopup
from app.ui.runtime import DesktopRuntime
from app.ui.theme import apply_theme, icon
from app.ui.tray import TrayAgent

log = logging.getLogger(__name__)

SHOWN_ENV = "BYENATOS_ANNOUNCE_SHOWN"  # benchmarks: print a line when the window is on screen
# Automation (end-to-end tests, scripts/screenshots.py): "path/to/file.py:function" or
# "package.module:function", an `async def function(desktop: DesktopApp)` run inside the app
# once the kernel and the gateway are up; the app quits when it returns (exit code 1 if it raised).
SCRIPT_ENV = "BYENATOS_UI_SCRIPT"

Script = Callable[["DesktopApp"], Awaitable[Any]]


class DesktopApp(QObject):
    """Everything the app runs, wired together; `main()` runs until Quit."""

    def __init__(
        self,
        app: QApplication,
        runtime: DesktopRuntime,
        *,
        instance: SingleInstance | None = None,
        hotkeys: bool = True,
    ) -> None:
        super().__init__()
        self.app = app
        self.runtime = runtime
        self.instance = instance
        self._theming = False
        apply_theme(app, runtime.prefs.theme)
        hints = app.styleHints()
        if hasattr(hints, "colorSchemeChanged"):  # the desktop switched light/dark while we run
            hints.colorSchemeChanged.connect(self._system_scheme_changed)
        self.tray = TrayAgent(runtime, self)
        self.window = MainWindow(runtime, tray_available=self.tray.available)
        self.popup = AssistantPopup(runtime)
        self.hotkey = GlobalHotkey(self)
        self._hotkeys = hotkeys
        self._quit = asyncio.Event()
        self._script: asyncio.Task[Any] | None = None
        self.exit_code = 0
        self.hotkey_state = (False, "")  # (listening, problem) for the Settings view

        self.tray.openWindow.connect(self.window.bring_to_front)
        self.tray.openAssistant.connect(self.popup.open)
        self.tray.openAbout.connect(self.window.show_about)
        self.tray.quitRequested.connect(self.quit)
        self.tray.message.connect(self._notify)
        self.window.quitRequested.connect(self.quit)
        self.window.closedToTray.connect(self._closed_to_tray)
        self.hotkey.activated.connect(self.popup.open)
        self.window.viewCreated.connect(self._view_created)
        if instance is not None:
            instance.activated.connect(self.window.bring_to_front)

    async def main(self, *, scan: bool = True, script: Script | None = None) -> int:
        self.window.show()
        self.tray.show()
        await self.runtime.start(scan=scan)
        if self._hotkeys and self.runtime.prefs.hotkey_enabled:
            self.set_hotkey(self.runtime.prefs.hotkey)
        if script is not None:
            self._script = asyncio.ensure_future(self._run_script(script))
        await self._quit.wait()
        await self.shutdown()
        return self.exit_code

    async def _run_script(self, script: Script) -> None:
        try:
            await script(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            traceback.print_exc()
            self.exit_code = 1
        self.quit()

    def quit(self) -> None:
        self._quit.set()

    async def shutdown(self) -> None:
        """In-flight work ends (or is cancelled), the gateway stops, the databases close."""
        if self._script is not None and not self._script.done():
            self._script.cancel()  # the user quit while a script was running
            with contextlib.suppress(asyncio.CancelledError):
                await self._script
        self.hotkey.stop()
        self.popup.hide()
        self.window.hide()
        self.tray.close()
        await self.popup.aclose()
        market = self.window.views.get("Marketplace")  # only if it was ever opened
        if market is not None:
            await market.aclose()
        await tasks.cancel_all()
        await self.runtime.stop()
        if self.instance is not None:
            self.instance.release()

    def set_hotkey(self, text: str) -> None:
        if not text:
            self.hotkey.stop()
            self.hotkey_state = (False, "")
        else:
            self.hotkey_state = (self.hotkey.start(text), self.hotkey.problem)
        settings = self.window.views.get("Settings")
        if settings is not None:
            settings.show_hotkey_status(*self.hotkey_state)

    def _view_created(self, view: Any) -> None:
        if view.title == "Settings":
            view.hotkeyChanged.connect(self.set_hotkey)
            view.themeChanged.connect(self._apply_theme)
            view.show_hotkey_status(*self.hotkey_state)

    def _apply_theme(self, theme: str) -> None:
        apply_theme(self.app, theme)

    def _system_scheme_changed(self, *_: object) -> None:
        # apply_theme itself sets the scheme (which signals again): follow the desktop only once.
        if self.runtime.prefs.theme == "system" and not self._theming:
            self._theming = True
            try:
                apply_theme(self.app, "system")
            finally:
                self._theming = False

    def _closed_to_tray(self) -> None:
        if not self.runtime.prefs.tray_hint_shown:
            self._notify("ByenatOS keeps running in the tray. Quit from the tray menu.")
            self.runtime.prefs.tray_hint_shown = True
            self.runtime.save_prefs()

    def _notify(self, text: str) -> None:
        if self.tray.available and self.tray.icon.isVisible():
            self.tray.icon.showMessage("ByenatOS", text, icon("byenatos"), 4000)
        self.window.statusBar().showMessage(text, 8000)


def _excepthook(window: MainWindow | None):
    def hook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        # Never a traceback dialog, never a crash: log it and say it in one line.
        log.error("unexpected error", exc_info=(exc_type, exc, tb))
        if window is not None:
            window.statusBar().showMessage(f"Something went wrong: {exc}", 15000)

    return hook


def load_script(spec: str) -> Script:
    """The function a SCRIPT_ENV value names ("file.py:function" or "module:function")."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ValueError(f"{SCRIPT_ENV} must be 'file.py:function' or 'module:function', not {spec!r}")
    if target.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location("byenatos_ui_script", target)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"{SCRIPT_ENV}: cannot load {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    func: Script = getattr(module, name)
    return func


def run(argv: list[str] | None = None, *, host: str | None = None, port: int | None = None) -> int:
    """The desktop app until Quit. `host`/`port`: where the gateway listens instead of the
    settings' address (`byenatos --host/--port`)."""
    started = time.perf_counter()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("ByenatOS")
    app.setDesktopFileName("byenatos")
    app.setWindowIcon(icon("byenatos"))
    app.setQuitOnLastWindowClosed(False)  # the tray keeps us alive

    script = load_script(os.environ[SCRIPT_ENV]) if os.environ.get(SCRIPT_ENV) else None
    paths = Paths.default().ensure()
    instance = SingleInstance(server_name(paths))
    if not instance.claim():
        where = running_address(paths)
        print(f"ByenatOS is already running{f' (gateway on {where})' if where else ''}: "
              "its window was brought to the front.")
        return 0
    other = running_elsewhere(paths)
    if other is not None:  # `byenatos serve` on this home: a second kernel would share its databases
        instance.release()
        print(f"byenatos: ByenatOS is already running for this home ({other.what}, pid {other.pid}) on "
              f"{other.url}; stop it to open the desktop app, or use that one (`byenatos socket show`)",
              file=sys.stderr)
        return 1
    if not QSystemTrayIcon.isSystemTrayAvailable():
        print(
            "byenatos: no system tray on this desktop; ByenatOS runs in its window (closing it quits)",
            file=sys.stderr,
        )

    loop = make_loop(app)
    asyncio.set_event_loop(loop)
    desktop = DesktopApp(app, DesktopRuntime(paths=paths, gateway_host=host, gateway_port=port), instance=instance)
    sys.excepthook = _excepthook(desktop.window)
    if os.environ.get(SHOWN_ENV):
        desktop.window.firstShown.connect(
            lambda: print(f"BYENATOS_SHOWN {time.perf_counter() - started:.3f}", flush=True)
        )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: loop.call_soon_threadsafe(desktop.quit))
    # Python runs signal handlers only between bytecodes: a light timer lets it look while Qt idles.
    wake = QTimer()
    wake.start(500)
    wake.timeout.connect(lambda: None)
    heap.freeze_when_settled(loop)  # the window, the kernel and the gateway are up by then
    with loop:
        return loop.run_until_complete(desktop.main(script=script))
