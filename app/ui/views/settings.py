"""The Settings view: gateway address, hotkey (conflicts reported), start at login, theme."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.kernel.config import GatewaySettings
from app.ui.autostart import Autostart
from app.ui.hotkey import Hotkey, HotkeyError
from app.ui.views.base import View

THEMES = [("Follow the system", "system"), ("Light", "light"), ("Dark", "dark")]


class SettingsView(View):
    title = "Settings"
    icon_name = "settings"
    subtitle = (
        "The theme, start at login and the hotkey's on/off switch apply at once; a new gateway "
        "address or hotkey applies when you press its Apply button."
    )

    hotkeyChanged = Signal(str)
    themeChanged = Signal(str)

    def __init__(self, runtime, parent: QWidget | None = None, *, autostart: Autostart | None = None) -> None:
        super().__init__(runtime, parent)
        self.autostart = autostart or Autostart()
        prefs = runtime.prefs

        gw = QGroupBox("Local gateway", self)
        gform = QFormLayout(gw)
        self.host = QLineEdit(runtime.kernel.settings.gateway.host, gw)
        self.host.setAccessibleName("Gateway host")
        self.port = QSpinBox(gw)
        self.port.setRange(1, 65535)
        self.port.setValue(runtime.kernel.settings.gateway.port)
        self.port.setAccessibleName("Gateway port")
        self.gateway_status = QLabel("", gw)
        self.gateway_status.setWordWrap(True)
        apply_gw = QPushButton("Apply and restart gateway", gw)
        apply_gw.clicked.connect(self.apply_gateway)
        gform.addRow("Host", self.host)
        gform.addRow("Port", self.port)
        gform.addRow("", apply_gw)
        gform.addRow("Status", self.gateway_status)
        self.body.addWidget(gw)

        hk = QGroupBox("Assistant hotkey", self)
        hform = QFormLayout(hk)
        self.hotkey_enabled = QCheckBox("Open the assistant with a global hotkey", hk)
        self.hotkey_enabled.setChecked(prefs.hotkey_enabled)
        self.hotkey = QKeySequenceEdit(hk)
        self.hotkey.setAccessibleName("Hotkey")
        self.hotkey.setMaximumSequenceLength(1)
        self.hotkey.setKeySequence(prefs.hotkey)
        row = QHBoxLayout()
        row.addWidget(self.hotkey, 1)
        apply_hk = QPushButton("Apply", hk)
        apply_hk.clicked.connect(self.apply_hotkey)
        row.addWidget(apply_hk)
        self.hotkey_status = QLabel("", hk)
        self.hotkey_status.setWordWrap(True)
        hform.addRow(self.hotkey_enabled)
        hform.addRow("Keys", row)
        hform.addRow("", self.hotkey_status)
        self.body.addWidget(hk)

        gen = QGroupBox("Desktop", self)
        dform = QFormLayout(gen)
        self.start_at_login = QCheckBox("Start ByenatOS when I log in", gen)
        self.start_at_login.setChecked(self._autostart_enabled())
        self.start_at_login.toggled.connect(self.set_start_at_login)
        self.theme = QComboBox(gen)
        self.theme.setAccessibleName("Theme")
        for label, key in THEMES:
            self.theme.addItem(label, key)
        self.theme.setCurrentIndex([k for _, k in THEMES].index(prefs.theme))
        self.theme.currentIndexChanged.connect(self._theme_changed)
        dform.addRow(self.start_at_login)
        dform.addRow("Theme", self.theme)
        self.body.addWidget(gen)

        for box in (gw, hk, gen):
            box.setMaximumWidth(760)  # forms read badly stretched across a wide window
        paths = runtime.kernel.paths
        where = QLabel(f"Settings: {paths.config_dir}<br>Data: {paths.data_dir}", self)
        where.setObjectName("Muted")
        self.body.addWidget(where)
        self.body.addStretch(1)
        self.hotkey_enabled.toggled.connect(lambda _on: self.apply_hotkey())
        runtime.gatewayChanged.connect(self._show_gateway)
        self._show_gateway()

    # -- gateway -----------------------------------------------------------------------------
    def _show_gateway(self, *_: object) -> None:
        rt = self.runtime
        if rt.gateway_url:
            self.gateway_status.setText(f"✓ Serving on {rt.gateway_url} — OpenAI API at {rt.gateway_url}/v1")
        elif rt.gateway_error:
            self.gateway_status.setText(f"✗ {rt.gateway_error}")
        else:
            self.gateway_status.setText(rt.gateway_state.value)

    def apply_gateway(self):
        try:
            new = GatewaySettings(host=self.host.text().strip() or "127.0.0.1", port=self.port.value())
        except ValueError as e:
            self.banner.error(f"That gateway address is not valid: {e}")
            return None
        if new.host not in ("127.0.0.1", "localhost", "::1"):
            self.banner.info(f"Listening on {new.host}: other machines on the network can reach the gateway.")
        kernel = self.runtime.kernel
        kernel.settings.gateway = new
        kernel.save_settings()
        self.runtime._gateway_port = None  # from now on the setting decides

        async def restart() -> None:
            if await self.runtime.restart_gateway():
                self.banner.ok(f"Gateway restarted on {self.runtime.gateway_url}.")
            else:
                self.banner.error(self.runtime.gateway_error)

        return self.run(restart(), name="gateway-restart")

    # -- hotkey ------------------------------------------------------------------------------
    def hotkey_text(self) -> str:
        return self.hotkey.keySequence().toString()

    def apply_hotkey(self) -> bool:
        prefs = self.runtime.prefs
        text = self.hotkey_text()
        if self.hotkey_enabled.isChecked():
            try:
                parsed = Hotkey.parse(text)
            except HotkeyError as e:
                self.hotkey_status.setText(f"✗ {e}")
                return False
            prefs.hotkey = parsed.label()
        prefs.hotkey_enabled = self.hotkey_enabled.isChecked()
        self.runtime.save_prefs()
        self.hotkeyChanged.emit(prefs.hotkey if prefs.hotkey_enabled else "")
        return True

    def show_hotkey_status(self, active: bool, problem: str) -> None:
        prefs = self.runtime.prefs
        if not prefs.hotkey_enabled:
            self.hotkey_status.setText("Off.")
        elif active:
            self.hotkey_status.setText(f"✓ {prefs.hotkey} opens the assistant.")
        else:
            self.hotkey_status.setText(f"✗ {problem}")

    # -- desktop -----------------------------------------------------------------------------
    def _autostart_enabled(self) -> bool:
        try:
            return self.autostart.is_enabled()
        except OSError:
            return False

    def set_start_at_login(self, on: bool) -> None:
        try:
            self.autostart.set_enabled(on)
        except OSError as e:
            self.banner.error(f"Could not change start at login: {e.strerror or e}")
            self.start_at_login.blockSignals(True)
            self.start_at_login.setChecked(not on)
            self.start_at_login.blockSignals(False)
            return
        self.runtime.prefs.start_at_login = on
        self.runtime.save_prefs()

    def _theme_changed(self) -> None:
        self.runtime.prefs.theme = self.theme.currentData()
        self.runtime.save_prefs()
        self.themeChanged.emit(self.runtime.prefs.theme)
