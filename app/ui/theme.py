"""Look and feel: follow the system's light/dark scheme (or the user's choice), our icons.

Qt's own style draws the widgets (native look); we only add a small stylesheet for the
things Qt has no widget for (model cards, the socket, chips) using palette colours, so
both schemes stay readable.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parents[2] / "resources"
ICONS = RESOURCES / "icons"

ACCENT = "#6366f1"
OK = "#16a34a"
WARN = "#d97706"
BAD = "#dc2626"


def apply_theme(app: QApplication, theme: str = "system") -> None:
    """Set the colour scheme: "system" follows the desktop, "light"/"dark" force one."""
    hints = QGuiApplication.styleHints()
    scheme = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(theme, Qt.ColorScheme.Unknown)
    if hasattr(hints, "setColorScheme"):  # Qt 6.8+: the platform theme does the work
        hints.setColorScheme(scheme)
    if theme == "dark" or (theme == "system" and hints.colorScheme() == Qt.ColorScheme.Dark):
        # Fusion draws dark palettes faithfully where the platform style would not.
        app.setStyle("Fusion")
        app.setPalette(_dark_palette())
    else:
        app.setPalette(app.style().standardPalette())
    app.setStyleSheet(STYLESHEET)



def is_dark(widget_palette: QPalette | None = None) -> bool:
    pal = widget_palette or QApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor("#1e1f24"), QColor("#26272d"), QColor("#e5e7eb")
    for role, color in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, QColor("#2c2d34")),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor("#303139")),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.ToolTipBase, base),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Highlight, QColor(ACCENT)),
        (QPalette.ColorRole.HighlightedText, QColor("#ffffff")),
        (QPalette.ColorRole.Link, QColor("#a5b4fc")),
        (QPalette.ColorRole.PlaceholderText, QColor("#8b8d98")),
        (QPalette.ColorRole.Mid, QColor("#3a3b44")),
    ):
        p.setColor(role, color)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6b6d78"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#6b6d78"))
    return p


@cache
def icon(name: str) -> QIcon:
    """An icon from resources/icons by stem (`tray-idle`, `socket`…); empty if missing."""
    path = ICONS / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


def tinted_icon(name: str, color: str) -> QIcon:
    """A line icon (drawn with currentColor) in the given colour, for the sidebar."""
    path = ICONS / f"{name}.svg"
    if not path.exists():
        return QIcon()
    svg = path.read_text(encoding="utf-8").replace("currentColor", color)
    pix = QPixmap()
    pix.loadFromData(QByteArray(svg.encode()), "SVG")
    return QIcon(pix)


# Object names and dynamic properties select these rules; colours come from the palette.
STYLESHEET = f"""
QFrame#ModelCard {{
    border: 1px solid palette(mid); border-radius: 10px; background: palette(base);
}}
QFrame#ModelCard[selected="true"] {{
    border: 2px solid {ACCENT}; background: rgba(99, 102, 241, 0.10);
}}
QFrame#ModelCard:focus {{ border: 2px dashed palette(text); }}
QFrame#ModelCard[selected="true"]:focus {{ border: 2px dashed {ACCENT}; }}
QLabel#CardTitle {{ font-weight: 600; }}
QLabel#Muted, QLabel[muted="true"] {{ color: palette(placeholder-text); }}
QLabel#Pill {{
    border-radius: 8px; padding: 1px 8px; color: white; background: #6b7280; font-size: 11px;
}}
QLabel#Pill[state="warm"], QLabel#Pill[state="serving"], QLabel#Pill[state="ok"] {{ background: {OK}; }}
QLabel#Pill[state="loading"] {{ background: {WARN}; }}
QLabel#Pill[state="error"] {{ background: {BAD}; }}
QLabel#Pill[state="fits"] {{ background: {OK}; }}
QLabel#Pill[state="tight"] {{ background: {WARN}; }}
QLabel#Pill[state="toobig"] {{ background: {BAD}; }}
QLabel#Pill[state="cloud"] {{ background: #0ea5e9; }}
QLabel#ViewTitle {{ font-size: 20px; font-weight: 600; }}
QFrame#EmptyState {{
    border: 1px dashed palette(mid); border-radius: 10px; background: palette(base);
}}
QLabel#EmptyTitle {{ font-size: 16px; font-weight: 600; }}
QFrame#Banner {{ border-radius: 8px; padding: 6px; }}
QFrame#Banner[kind="error"] {{ background: rgba(220, 38, 38, 0.15); border: 1px solid {BAD}; }}
QFrame#Banner[kind="info"] {{ background: rgba(99, 102, 241, 0.12); border: 1px solid {ACCENT}; }}
QFrame#Banner[kind="ok"] {{ background: rgba(22, 163, 74, 0.12); border: 1px solid {OK}; }}
QListWidget#Sidebar {{ border: none; background: transparent; font-size: 14px; }}
QListWidget#Sidebar::item {{ padding: 8px 10px; border-radius: 8px; }}
QListWidget#Sidebar::item:selected {{ background: {ACCENT}; color: white; }}
/* Qt's own tray balloon (no notification service) is always pale yellow: dark text on it. */
QBalloonTip QLabel {{ color: #1f2937; }}
QFrame#Popup {{ border: 1px solid palette(mid); border-radius: 14px; background: palette(window); }}
QLineEdit#PopupInput {{ font-size: 18px; padding: 10px; border: none; background: transparent; }}
"""
