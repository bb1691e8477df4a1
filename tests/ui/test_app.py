"""The whole app: starts the kernel and gateway behind a window, closes to the tray, quits cleanly."""

from __future__ import annotations

import asyncio
import sys

import httpx
import pytest
from PySide6.QtWidgets import QApplication

from app.ui.main import DesktopApp
from app.ui.main_window import MainWindow
from app.ui.runtime import DesktopRuntime
from tests.ui.conftest import running_desktop, wait_signal


@pytest.fixture
async def desktop(kernel_with_openai, qapp, autostart_home):
    async with running_desktop(kernel_with_openai, qapp) as app:
        yield app


async def test_the_app_serves_the_gateway_and_quits_cleanly(desktop):
    url = desktop.runtime.gateway_url
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{url}/v1/models", headers=desktop.popup._auth_headers())
    assert r.status_code == 200 and "fake/gpt-fake-mini" in r.text
    assert desktop.window.isVisible()
    assert "Gateway on" in desktop.window.gateway_label.text()
    desktop.quit()
    await wait_signal(desktop.runtime.gatewayChanged, check=lambda s: s == "stopped")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/api/health")


async def test_closing_the_window_keeps_running_in_the_tray(desktop):
    desktop.window.tray_available = True
    closed = []
    desktop.window.closedToTray.connect(lambda: closed.append(True))
    desktop.window.close()
    assert closed == [True] and not desktop.window.isVisible()
    assert desktop.runtime.gateway_url is not None  # still serving
    assert desktop.runtime.prefs.tray_hint_shown  # told once where it went
    desktop.tray.openWindow.emit()
    assert desktop.window.isVisible()


async def test_without_a_tray_closing_quits_and_the_status_says_so(runtime, qtbot):
    window = MainWindow(runtime, tray_available=False)
    qtbot.addWidget(window)
    assert "No system tray" in window.gateway_label.text()
    quits = []
    window.quitRequested.connect(lambda: quits.append(True))
    window.show()
    window.close()
    assert quits == [True]


async def test_views_are_reachable_by_keyboard(runtime, qtbot):
    from PySide6.QtGui import QKeySequence, QShortcut

    window = MainWindow(runtime)
    qtbot.addWidget(window)
    shortcuts = {s.key().toString(): s for s in window.findChildren(QShortcut)}
    assert list(window.views) == ["Socket"]  # the others are built when first opened
    for i, title in enumerate(reversed(window.titles)):
        n = len(window.titles) - i
        shortcuts[QKeySequence(f"Ctrl+{n}").toString()].activated.emit()
        assert window.stack.currentIndex() == n - 1 and window.current_view() is window.views[title]


async def test_unexpected_errors_become_a_status_line_not_a_dialog(runtime, qtbot):
    from app.ui.main import _excepthook

    window = MainWindow(runtime)
    qtbot.addWidget(window)
    hook = _excepthook(window)
    try:
        raise ValueError("disk full")
    except ValueError:
        hook(*sys.exc_info())
    assert window.statusBar().currentMessage() == "Something went wrong: disk full"
    assert not QApplication.activeModalWidget()


async def test_a_busy_port_is_a_readable_gateway_error(kernel, qapp, autostart_home):
    blocker = DesktopRuntime(kernel, gateway_port=0, sample_hardware=False)
    await blocker.start(scan=False)
    try:
        rt = DesktopRuntime(kernel, gateway_port=blocker.gateway.port, sample_hardware=False)
        errors: list[str] = []
        rt.error.connect(errors.append)
        assert await rt.start_gateway() is False
        assert (
            rt.gateway_state.value == "failed" and "already" in rt.gateway_error
        )  # "in use" / "already running"
        assert errors and errors[0].startswith("The local gateway could not start")
        window = MainWindow(rt)
        assert "Gateway stopped" in window.gateway_label.text()
        window.deleteLater()
    finally:
        await blocker.stop()


async def test_the_window_is_built_before_the_kernel_starts(home, qapp, autostart_home, monkeypatch):
    """The real start order: window first (start-up time), kernel after; views fill in then."""
    from app.kernel.security.secrets import BACKEND_ENV

    monkeypatch.setenv(BACKEND_ENV, "file")
    runtime = DesktopRuntime(gateway_port=0, sample_hardware=False)
    app = DesktopApp(qapp, runtime, hotkeys=False)  # nothing may touch the database yet
    assert app.window.model_label.text() == "No model yet"
    main = asyncio.ensure_future(app.main(scan=False))
    await wait_signal(runtime.gatewayChanged, check=lambda s: s == "running")
    assert runtime.started and app.window.isVisible()
    app.quit()
    assert await main == 0
    assert not runtime.started
    app.window.deleteLater()
    app.popup.deleteLater()
