"""What every view shares: a title row, a message banner, the runtime, a refresh hook."""

from __future__ import annotations

from typing import ClassVar

from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from app.ui.runtime import DesktopRuntime
from app.ui.tasks import spawn
from app.ui.widgets.banner import Banner


class View(QWidget):
    title: ClassVar[str] = ""
    icon_name: ClassVar[str] = ""
    subtitle: ClassVar[str] = ""

    def __init__(self, runtime: DesktopRuntime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.setObjectName(f"{type(self).__name__}")
        self.setAccessibleName(self.title)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(20, 16, 20, 16)
        outer.setSpacing(10)
        heading = QLabel(self.title, self)
        heading.setObjectName("ViewTitle")
        outer.addWidget(heading)
        if self.subtitle:
            sub = QLabel(self.subtitle, self)
            sub.setObjectName("Muted")
            sub.setWordWrap(True)
            outer.addWidget(sub)
        self.banner = Banner(self)
        outer.addWidget(self.banner)
        self.body = QVBoxLayout()
        self.body.setSpacing(10)
        outer.addLayout(self.body, 1)

    def run(self, coro, name: str | None = None):
        """Run a kernel call for this view; failures land in the banner."""
        return spawn(coro, on_error=self.banner.error, name=name or f"{type(self).__name__}")

    def activated(self) -> None:
        """The view became visible: refresh what may have changed while hidden."""
