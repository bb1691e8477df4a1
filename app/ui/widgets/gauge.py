"""A radial gauge (value 0..100 as an arc) with a caption, painted with QPainter."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui.theme import ACCENT, BAD, WARN


class Gauge(QWidget):
    def __init__(self, title: str, unit: str = "%", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.value: float | None = None  # None: no data (e.g. no GPU)
        self.detail = ""  # second line under the number ("5.1 / 16 GB")
        self.maximum = 100.0
        self.setMinimumSize(104, 124)  # five fit side by side at the window's minimum width
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName(title)

    def sizeHint(self) -> QSize:
        return QSize(160, 160)

    def set_value(self, value: float | None, detail: str = "") -> None:
        self.value, self.detail = value, detail
        self.setAccessibleDescription(self.text())
        self.update()

    def text(self) -> str:
        if self.value is None:
            return self.detail or "—"
        return f"{self.value:.0f}{self.unit}"

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        side = min(self.width(), self.height() - 18) - 12
        rect = QRectF((self.width() - side) / 2, 6, side, side)
        pal = self.palette()
        track = QPen(pal.color(QPalette.ColorRole.Mid), 10, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
        p.setPen(track)
        p.drawArc(rect, 225 * 16, -270 * 16)
        if self.value is not None:
            frac = max(0.0, min(1.0, self.value / self.maximum))
            color = QColor(BAD if frac > 0.9 else WARN if frac > 0.75 else ACCENT)
            p.setPen(QPen(color, 10, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            p.drawArc(rect, 225 * 16, int(-270 * 16 * frac))
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        big = QFont(self.font())
        big.setPointSizeF(self.font().pointSizeF() * (1.9 if self.value is not None else 1.0))
        big.setBold(True)
        p.setFont(big)
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, self.text() if self.value is not None else "—")
        small = QFont(self.font())
        p.setFont(small)
        p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        if self.value is not None and self.detail:
            p.drawText(rect.adjusted(0, side * 0.32, 0, 0), Qt.AlignmentFlag.AlignCenter, self.detail)
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        p.drawText(QRectF(0, rect.bottom() - 6, self.width(), 22), Qt.AlignmentFlag.AlignHCenter, self.title)
        if self.value is None and self.detail:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(
                rect.adjusted(8, side * 0.3, -8, 0),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.detail,
            )
        p.end()
