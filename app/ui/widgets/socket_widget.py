"""The CPU socket: the current model drawn as a chip seated in a socket; a drop target.

Dropping a model card here asks for a swap (`modelDropped`); while the swap runs the chip
pulses, and the outcome shows as a green seat (done) or a red one (failed).
"""

from __future__ import annotations

from PySide6.QtCore import QEasingCurve, QRectF, QSize, Qt, QVariantAnimation, Signal
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QFont, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui.theme import ACCENT, BAD, OK
from app.ui.widgets.model_card import MODEL_MIME


class SocketWidget(QWidget):
    modelDropped = Signal(str)  # model id

    def __init__(self, alias: str = "default", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.alias = alias
        self.model_name = ""  # shown on the chip
        self.model_provider = ""  # under the name: two providers may serve the same name
        self.model_detail = ""
        self.phase = "idle"  # idle / hover / swapping / done / failed
        self._pulse = 0.0
        self.setAcceptDrops(True)
        self.setMinimumSize(170, 170)  # the left column must fit the window's minimum height
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setAccessibleName(f"Socket {alias}")
        self._anim = QVariantAnimation(self)
        self._anim.setStartValue(0.0)
        self._anim.setEndValue(1.0)
        self._anim.setDuration(900)
        self._anim.setLoopCount(-1)
        self._anim.setEasingCurve(QEasingCurve.Type.InOutSine)
        self._anim.valueChanged.connect(self._on_pulse)

    def sizeHint(self) -> QSize:
        return QSize(280, 280)

    def set_model(self, name: str, detail: str = "", provider: str = "") -> None:
        self.model_name, self.model_detail, self.model_provider = name, detail, provider
        self.setAccessibleDescription(f"{name or 'empty'} {detail}".strip())
        self.setToolTip(f"{name} from {provider}\n{detail}".strip() if name else "")
        self.update()

    def chip_text(self) -> str:
        """What the chip says: the model's name, and its provider on the line below."""
        name = self._short(self.model_name)
        return f"{name}\n{self._short(self.model_provider)}" if self.model_provider else name

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if phase == "swapping":
            self._anim.start()
        else:
            self._anim.stop()
            self._pulse = 0.0
        self.update()

    def _on_pulse(self, v: float) -> None:
        self._pulse = float(v)
        self.update()

    # -- drops -----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasFormat(MODEL_MIME):
            event.acceptProposedAction()
            if self.phase != "swapping":
                self.set_phase("hover")
        else:
            event.ignore()

    def dragLeaveEvent(self, _event) -> None:
        if self.phase == "hover":
            self.set_phase("idle")

    def dropEvent(self, event: QDropEvent) -> None:
        data = event.mimeData()
        if not data.hasFormat(MODEL_MIME):
            event.ignore()
            return
        event.acceptProposedAction()
        if self.phase == "hover":
            self.set_phase("idle")
        self.modelDropped.emit(bytes(data.data(MODEL_MIME).data()).decode())

    # -- painting ----------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        side = min(self.width(), self.height()) - 16
        outer = QRectF((self.width() - side) / 2, (self.height() - side) / 2, side, side)
        # socket body
        body = (
            QColor("#2b2d35") if pal.color(QPalette.ColorRole.Window).lightness() < 128 else QColor("#d9dbe3")
        )
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(body)
        p.drawRoundedRect(outer, 18, 18)
        # pin field: a grid of holes around the seat
        hole = QColor("#1b1c22") if body.lightness() < 128 else QColor("#b5b8c4")
        p.setBrush(hole)
        n = 9
        gap = side / (n + 1)
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if 2 < i < n - 1 and 2 < j < n - 1:
                    continue
                p.drawEllipse(outer.left() + i * gap - 2.5, outer.top() + j * gap - 2.5, 5, 5)
        # seat outline, coloured by phase
        seat = outer.adjusted(side * 0.2, side * 0.2, -side * 0.2, -side * 0.2)
        phase_color = {"hover": QColor(ACCENT), "done": QColor(OK), "failed": QColor(BAD)}.get(self.phase)
        if self.phase == "swapping":
            phase_color = QColor(ACCENT)
            phase_color.setAlphaF(0.35 + 0.65 * self._pulse)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.setPen(
            QPen(
                phase_color or pal.color(QPalette.ColorRole.Mid),
                3,
                Qt.PenStyle.DashLine
                if self.phase in ("hover", "idle") and not self.model_name
                else Qt.PenStyle.SolidLine,
            )
        )
        p.drawRoundedRect(seat.adjusted(-6, -6, 6, 6), 12, 12)
        # the chip (the model)
        if self.model_name:
            chip = seat.adjusted(4, 4, -4, -4)
            if self.phase == "swapping":
                lift = 6 * self._pulse
                chip = chip.translated(0, -lift)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(ACCENT))
            p.drawRoundedRect(chip, 10, 10)
            p.setPen(QPen(QColor(255, 255, 255, 200), 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(chip.adjusted(8, 8, -8, -8), 6, 6)
            p.setPen(QColor("white"))
            f = QFont(self.font())
            f.setBold(True)
            p.setFont(f)
            text_rect = chip.adjusted(12, 12, -12, -12)
            if self.model_provider:
                name_rect = text_rect.adjusted(0, 0, 0, -text_rect.height() * 0.3)
                p.drawText(
                    name_rect,
                    Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom | Qt.TextFlag.TextWordWrap,
                    self._short(self.model_name),
                )
                f.setBold(False)
                p.setFont(f)
                p.setPen(QColor(255, 255, 255, 215))
                p.drawText(
                    text_rect.adjusted(0, text_rect.height() * 0.72, 0, 0),
                    Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                    self._short(self.model_provider),
                )
            else:
                p.drawText(
                    text_rect,
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    self._short(self.model_name),
                )
        else:
            p.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
            p.drawText(seat, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, "Drop a model here")
        # alias label under the socket
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        p.drawText(
            QRectF(outer.left(), outer.bottom() - side * 0.17, side, side * 0.15),
            Qt.AlignmentFlag.AlignCenter,
            self.alias,
        )
        p.end()

    @staticmethod
    def _short(name: str) -> str:
        return name if len(name) <= 28 else name[:26] + "…"
