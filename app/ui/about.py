"""The About box: what is running (version, gateway, data folder, Python and Qt) and a button that
copies the same facts as plain text, for a bug report.

The version is the installed package's (pyproject is the one source, read through
importlib.metadata), the same number `byenatos --version` prints, frozen bundle included.
"""

from __future__ import annotations

import platform
import sys

import PySide6
from PySide6.QtCore import Qt, QTimer, qVersion
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import version
from app.ui.runtime import DesktopRuntime
from app.ui.theme import icon

COPIED_FOR_MS = 2500  # how long the button says "Copied"


class AboutDialog(QDialog):
    def __init__(self, runtime: DesktopRuntime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.setWindowTitle("About ByenatOS")
        self.setWindowIcon(icon("byenatos"))
        self.setMinimumWidth(460)

        logo = QLabel(self)
        logo.setPixmap(icon("byenatos").pixmap(64, 64))
        name = QLabel("<b>ByenatOS</b>", self)
        name.setStyleSheet("font-size: 18pt;")
        tagline = QLabel("A personal AI runtime for the desktop", self)
        header = QHBoxLayout()
        header.addWidget(logo)
        titles = QVBoxLayout()
        titles.addWidget(name)
        titles.addWidget(tagline)
        header.addLayout(titles, 1)

        self.version_label = self._value(version())
        self.gateway_label = self._value("")
        self.data_label = self._value(str(runtime.kernel.paths.data_dir))
        self.python_label = self._value(f"{platform.python_version()} ({platform.python_implementation()})")
        self.qt_label = self._value(f"{qVersion()} (PySide6 {PySide6.__version__})")
        form = QFormLayout()
        form.addRow("Version", self.version_label)
        form.addRow("Gateway", self.gateway_label)
        form.addRow("Data folder", self.data_label)
        form.addRow("Python", self.python_label)
        form.addRow("Qt", self.qt_label)

        self.copy_button = QPushButton("Copy diagnostics", self)
        self.copy_button.setToolTip("Copy these facts as plain text, e.g. for a bug report")
        self.copy_button.clicked.connect(self.copy_diagnostics)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addSpacing(8)
        layout.addLayout(form)
        layout.addWidget(buttons)

        self._reset_copy = QTimer(self)
        self._reset_copy.setSingleShot(True)
        self._reset_copy.timeout.connect(lambda: self.copy_button.setText("Copy diagnostics"))
        runtime.gatewayChanged.connect(self.refresh)
        self.refresh()

    def _value(self, text: str) -> QLabel:
        label = QLabel(text, self)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setWordWrap(True)
        return label

    def gateway_text(self) -> str:
        rt = self.runtime
        if rt.gateway_url:
            return f"{rt.gateway_url}/v1"
        if rt.gateway_error:
            return f"{rt.gateway_state.value}: {rt.gateway_error}"
        return rt.gateway_state.value

    def refresh(self, *_: object) -> None:
        self.gateway_label.setText(self.gateway_text())

    def diagnostics(self) -> str:
        """The facts shown, plus the OS and how ByenatOS runs, as lines of plain text."""
        frozen = "installed bundle" if getattr(sys, "frozen", False) else "from source"
        lines = [
            f"ByenatOS {version()} ({frozen})",
            f"Gateway: {self.gateway_text()}",
            f"Data folder: {self.runtime.kernel.paths.data_dir}",
            f"Config folder: {self.runtime.kernel.paths.config_dir}",
            f"Python: {platform.python_version()} ({platform.python_implementation()})",
            f"Qt: {qVersion()}, PySide6 {PySide6.__version__}, platform {QApplication.platformName()}",
            f"OS: {platform.platform()}",
        ]
        return "\n".join(lines)

    def copy_diagnostics(self) -> None:
        QApplication.clipboard().setText(self.diagnostics())
        self.copy_button.setText("Copied")
        self._reset_copy.start(COPIED_FOR_MS)
