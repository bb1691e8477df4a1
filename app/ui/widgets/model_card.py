"""A model as a card: name, provider, local/cloud, state (cold/loading/warm/serving), latency, health.

Cards are dragged into a socket to swap; with the keyboard, a focused card plugs in on
Enter (or from its context menu), so dragging is never the only way.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QPoint, Qt, Signal
from PySide6.QtGui import QDrag, QKeyEvent, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.kernel.canonical import ModelSpec
from app.ui.theme import BAD, OK, WARN

MODEL_MIME = "application/x-byenatos-model"
ACTIVATION_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space)


def is_plain_activation(event: QKeyEvent) -> bool:
    """Space, Return or Enter pressed with no modifier (the keypad's Enter counts as plain)."""
    mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    return (
        event.key() in ACTIVATION_KEYS
        and mods == Qt.KeyboardModifier.NoModifier
        and not event.isAutoRepeat()
    )


def human_bytes(n: int | None) -> str:
    if not n:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def context_label(tokens: int) -> str:
    return f"{tokens // 1024}k" if tokens >= 1024 else str(tokens)


class Pill(QLabel):
    def __init__(self, text: str = "", state: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setObjectName("Pill")
        self.set_state(text, state)

    def set_state(self, text: str, state: str) -> None:
        self.setText(text)
        self.setProperty("state", state)
        self.style().unpolish(self)
        self.style().polish(self)


class ModelCard(QFrame):
    plugRequested = Signal(str)  # model id: keyboard / menu alternative to dragging
    fallbackRequested = Signal(str)

    def __init__(self, spec: ModelSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.setObjectName("ModelCard")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.OpenHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName(f"Model {spec.display_name or spec.name} from {spec.provider}")
        self.setToolTip(f"{spec.id}\nDrag into the socket, or press Enter to plug it in.")
        self._press: QPoint | None = None

        title = QLabel(spec.display_name or spec.name, self)
        title.setObjectName("CardTitle")
        title.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        title.setWordWrap(True)  # long names wrap: a narrow window gets one column, not a scrollbar
        title.setMinimumWidth(60)
        sub = QLabel(self._subtitle(), self)
        sub.setObjectName("Muted")
        sub.setWordWrap(True)
        sub.setMinimumWidth(60)
        self.title_label, self.subtitle_label = title, sub
        self.state_pill = Pill("cloud" if not spec.local else "cold", "cloud" if not spec.local else "", self)
        self.latency = QLabel("", self)
        self.latency.setObjectName("Muted")
        self.health = QLabel("", self)
        self.health_state = ""

        top = QHBoxLayout()
        top.addWidget(title, 1)
        top.addWidget(self.health)
        bottom = QHBoxLayout()
        bottom.addWidget(self.state_pill)
        bottom.addWidget(self.latency)
        bottom.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(3)
        layout.addLayout(top)
        layout.addWidget(sub)
        layout.addLayout(bottom)
        self.state = "cloud" if not spec.local else "cold"

    def _subtitle(self) -> str:
        s = self.spec
        where = "local" if s.local else "cloud"
        bits = [
            s.provider if s.provider == where else f"{s.provider} · {where}",
            f"{context_label(s.context_window)} ctx",
        ]
        if s.local and s.memory_bytes:
            bits.append(human_bytes(s.memory_bytes))
        if not s.local and s.input_cost_per_token:
            bits.append(f"${s.input_cost_per_token * 1e6:.2f}/M in")
        return " · ".join(bits)

    # -- state -------------------------------------------------------------------------------
    def set_state(self, state: str) -> None:
        """cold / loading / warm / serving for local models; cloud models show "cloud" or "serving"."""
        self.state = state
        self.state_pill.set_state(state, state)

    def set_latency(self, ms: float | None) -> None:
        self.latency.setText(f"~{ms:.0f} ms" if ms is not None else "")

    def set_health(self, ok: bool | str | None, detail: str = "") -> None:
        """True: healthy (green); "cooling": failing lately, skipped until its cooldown ends (amber);
        False: unreachable (red); None: not known yet (no dot)."""
        state = {True: "ok", False: "down", None: ""}.get(ok, ok) if not isinstance(ok, str) else ok
        self.health_state = state
        text, color = {
            "ok": ("●", OK),
            "cooling": ("● cooling down", WARN),
            "down": ("● unreachable", BAD),
        }.get(state, ("", ""))
        self.health.setText(text)
        self.health.setStyleSheet(f"color: {color};" if color else "")
        self.health.setToolTip(detail)
        self.health.setAccessibleDescription(f"{text.strip('● ') or 'healthy'}: {detail}" if text else "")

    def set_selected(self, selected: bool) -> None:
        self.setProperty("selected", selected)
        self.style().unpolish(self)
        self.style().polish(self)

    # -- drag and keyboard ---------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position().toPoint()
            self.setFocus(Qt.FocusReason.MouseFocusReason)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press is None or not (event.buttons() & Qt.MouseButton.LeftButton):
            return
        if (event.position().toPoint() - self._press).manhattanLength() < QApplication.startDragDistance():
            return
        self._press = None
        drag = QDrag(self)
        drag.setMimeData(self.mime_data())
        pix = QPixmap(self.size())
        pix.fill(Qt.GlobalColor.transparent)
        self.render(pix)
        drag.setPixmap(pix.scaledToWidth(min(240, pix.width()), Qt.TransformationMode.SmoothTransformation))
        drag.setHotSpot(QPoint(20, 20))
        drag.exec(Qt.DropAction.CopyAction)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._press = None
        super().mouseReleaseEvent(event)

    def mime_data(self) -> QMimeData:
        mime = QMimeData()
        mime.setData(MODEL_MIME, self.spec.id.encode())
        mime.setText(self.spec.id)
        return mime

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Only a bare Space or Enter plugs the card in: Ctrl+Alt+Space (the assistant's global
        # hotkey) and every other combination with a modifier reach the card too, and must not.
        if is_plain_activation(event):
            self.plugRequested.emit(self.spec.id)
            return
        super().keyPressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.plugRequested.emit(self.spec.id)

    def contextMenuEvent(self, event) -> None:
        menu = QMenu(self)
        menu.addAction("Plug into the socket", lambda: self.plugRequested.emit(self.spec.id))
        menu.addAction("Add to the fallback chain", lambda: self.fallbackRequested.emit(self.spec.id))
        menu.exec(event.globalPos())
