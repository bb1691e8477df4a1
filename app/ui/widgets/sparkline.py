"""A short history chart: the last N values as a filled line, newest on the right."""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QPointF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui.theme import ACCENT


class Sparkline(QWidget):
    def __init__(
        self,
        title: str,
        *,
        capacity: int = 120,
        maximum: float | None = 100.0,
        unit: str = "%",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.values: deque[float] = deque(maxlen=capacity)
        self.maximum = maximum  # None: scale to the largest value shown
        self.placeholder = "collecting…"
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(f"{title} history")

    def sizeHint(self) -> QSize:
        return QSize(300, 80)

    def append(self, value: float) -> None:
        self.values.append(value)
        self.update()

    def extend(self, values) -> None:
        self.values.extend(values)
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        w, h = self.width(), self.height()
        top = 18
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        last = f"{self.values[-1]:.0f}{self.unit}" if self.values else ""
        p.drawText(4, 13, f"{self.title}  {last}")
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 1))
        p.drawRect(0, top, w - 1, h - top - 1)
        if len(self.values) < 2:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(0, top, w, h - top, Qt.AlignmentFlag.AlignCenter, self.placeholder)
            p.end()
            return
        peak = self.maximum or max(max(self.values), 1e-9)
        cap = self.values.maxlen or len(self.values)
        step = (w - 2) / max(cap - 1, 1)
        x0 = w - 1 - step * (len(self.values) - 1)
        path = QPainterPath()
        for i, v in enumerate(self.values):
            pt = QPointF(x0 + i * step, h - 2 - (h - top - 4) * max(0.0, min(1.0, v / peak)))
            path.lineTo(pt) if i else path.moveTo(pt)
        fill = QPainterPath(path)
        fill.lineTo(QPointF(w - 1, h - 1))
        fill.lineTo(QPointF(x0, h - 1))
        color = QColor(ACCENT)
        color.setAlpha(50)
        p.fillPath(fill, color)
        p.setPen(QPen(QColor(ACCENT), 2))
        p.drawPath(path)
        p.end()
