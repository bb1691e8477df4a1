"""The Settings view: gateway restart on a new port, hotkey validation, start at login, theme."""

from __future__ import annotations

import httpx
from PySide6.QtGui import QKeySequence

from app.ui.views.settings import SettingsView


async def test_gateway_moves_to_the_new_port(runtime, qtbot, unused_tcp_port):
    view = SettingsView(runtime)
    qtbot.addWidget(view)
    view.port.setValue(unused_tcp_port)
    await view.apply_gateway()
    assert runtime.gateway_url == f"http://127.0.0.1:{unused_tcp_port}"
    assert runtime.kernel.settings.gateway.port == unused_tcp_port  # saved for the next start
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{runtime.gateway_url}/api/health")).status_code in (200, 401)
    assert "Serving on" in view.gateway_status.text()


async def test_hotkey_is_validated_and_saved(runtime, qtbot):
    view = SettingsView(runtime)
    qtbot.addWidget(view)
    seen: list[str] = []
    view.hotkeyChanged.connect(seen.append)
    view.hotkey.setKeySequence(QKeySequence("Q"))
    assert view.apply_hotkey() is False
    assert "needs a modifier" in view.hotkey_status.text()
    view.hotkey.setKeySequence(QKeySequence("Ctrl+Shift+K"))
    assert view.apply_hotkey() is True
    assert runtime.prefs.hotkey == "Ctrl+Shift+K" and seen == ["Ctrl+Shift+K"]
    view.show_hotkey_status(False, "Ctrl+Shift+K is already used by another program")
    assert "already used" in view.hotkey_status.text()


async def test_start_at_login_writes_the_autostart_entry(runtime, qtbot, autostart_home):
    view = SettingsView(runtime)
    qtbot.addWidget(view)
    entry = autostart_home / "xdg-config" / "autostart" / "byenatos.desktop"
    view.start_at_login.setChecked(True)
    assert entry.exists() and runtime.prefs.start_at_login
    view.start_at_login.setChecked(False)
    assert not entry.exists()


async def test_theme_choice_is_applied_and_kept(runtime, qtbot, qapp):
    from app.ui.theme import apply_theme, is_dark

    view = SettingsView(runtime)
    qtbot.addWidget(view)
    view.themeChanged.connect(lambda t: apply_theme(qapp, t))
    view.theme.setCurrentIndex(view.theme.findData("dark"))
    assert runtime.prefs.theme == "dark" and is_dark()
    view.theme.setCurrentIndex(view.theme.findData("light"))
    assert not is_dark()
    apply_theme(qapp, "system")


async def test_the_subtitle_says_which_changes_need_apply(runtime, qtbot):
    from PySide6.QtWidgets import QLabel, QPushButton

    view = SettingsView(runtime)
    qtbot.addWidget(view)
    texts = [label.text() for label in view.findChildren(QLabel)]
    assert not any("Changes apply at once" in t for t in texts)
    assert any("applies when you press its Apply button" in t for t in texts)
    assert {b.text() for b in view.findChildren(QPushButton)} >= {"Apply", "Apply and restart gateway"}


def test_tray_balloons_are_readable_in_the_dark_theme(qapp, qtbot):
    """Where no notification service runs, Qt draws tray balloons itself (class QBalloonTip) on a
    fixed pale yellow; its labels took the dark theme's pale text."""
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QLabel, QWidget

    from app.ui.theme import apply_theme

    class QBalloonTip(QWidget):  # what Qt's private balloon is called, for the style sheet
        pass

    balloon = QBalloonTip()
    qtbot.addWidget(balloon)
    label = QLabel("Now serving gpt-fake-mini · fake", balloon)
    try:
        apply_theme(qapp, "dark")
        label.ensurePolished()
        text = label.palette().color(QPalette.ColorRole.WindowText)
        assert text.lightness() < 80  # dark text on the pale yellow (#ffffe1) balloon
    finally:
        apply_theme(qapp, "system")
