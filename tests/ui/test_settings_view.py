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
