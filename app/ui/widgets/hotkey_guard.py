"""Keeps the assistant's global hotkey away from the focused widget.

A global hotkey (pynput listens beside X11, not instead of it) still reaches whichever of our
widgets has the keyboard focus: Ctrl+Alt+Space arrives as Space on a focused button, check box,
list or model card, and Qt's own widgets act on Space whatever the modifiers (a button clicks,
a check box toggles). The guard watches the focus widget only (an application-wide filter
would see every event) and swallows the hotkey's press and release there.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QWidget

from app.ui.hotkey import Hotkey, HotkeyError

_MODIFIERS = {
    "<ctrl>": Qt.KeyboardModifier.ControlModifier,
    "<alt>": Qt.KeyboardModifier.AltModifier,
    "<shift>": Qt.KeyboardModifier.ShiftModifier,
    "<cmd>": Qt.KeyboardModifier.MetaModifier,
}
_KEYS = {
    "space": (Qt.Key.Key_Space,),
    "enter": (Qt.Key.Key_Return, Qt.Key.Key_Enter),
    "tab": (Qt.Key.Key_Tab, Qt.Key.Key_Backtab),
    "esc": (Qt.Key.Key_Escape,),
    "backspace": (Qt.Key.Key_Backspace,),
    "delete": (Qt.Key.Key_Delete,),
    "home": (Qt.Key.Key_Home,),
    "end": (Qt.Key.Key_End,),
    "insert": (Qt.Key.Key_Insert,),
    "page_up": (Qt.Key.Key_PageUp,),
    "page_down": (Qt.Key.Key_PageDown,),
    "up": (Qt.Key.Key_Up,),
    "down": (Qt.Key.Key_Down,),
    "left": (Qt.Key.Key_Left,),
    "right": (Qt.Key.Key_Right,),
}
_SWALLOWED = (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress, QEvent.Type.KeyRelease)
_ALL_MODS = (
    Qt.KeyboardModifier.ControlModifier
    | Qt.KeyboardModifier.AltModifier
    | Qt.KeyboardModifier.ShiftModifier
    | Qt.KeyboardModifier.MetaModifier
)


def qt_combination(hotkey: Hotkey) -> tuple[Qt.KeyboardModifier, tuple[int, ...]]:
    """The Qt modifiers and key codes a hotkey arrives as in a QKeyEvent."""
    mods = Qt.KeyboardModifier.NoModifier
    for m in hotkey.modifiers:
        mods |= _MODIFIERS[m]
    if hotkey.key in _KEYS:
        keys = tuple(int(k.value) for k in _KEYS[hotkey.key])
    elif hotkey.key.startswith("f") and hotkey.key[1:].isdigit():
        keys = (int(Qt.Key.Key_F1.value) + int(hotkey.key[1:]) - 1,)
    else:
        seq = QKeySequence(hotkey.key.upper())
        keys = (int(seq[0].key().value),) if seq.count() else ()
    return mods, keys


class HotkeyGuard(QObject):
    """Swallows `hotkey()` (e.g. "Ctrl+Alt+Space", "" when off) in whichever widget has the focus."""

    def __init__(self, hotkey: Callable[[], str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._hotkey = hotkey
        self._parsed: tuple[str, tuple[Qt.KeyboardModifier, tuple[int, ...]] | None] = ("", None)
        self._watched: QWidget | None = None
        app = QApplication.instance()
        if isinstance(app, QApplication):
            app.focusChanged.connect(self._focus_moved)
            self._focus_moved(None, app.focusWidget())

    def combination(self) -> tuple[Qt.KeyboardModifier, tuple[int, ...]] | None:
        text = self._hotkey() or ""
        if text != self._parsed[0]:
            try:
                parsed = qt_combination(Hotkey.parse(text)) if text else None
            except HotkeyError:
                parsed = None
            self._parsed = (text, parsed)
        return self._parsed[1]

    def matches(self, event: QKeyEvent) -> bool:
        combo = self.combination()
        if combo is None:
            return False
        mods, keys = combo
        return event.key() in keys and (event.modifiers() & _ALL_MODS) == mods

    def _focus_moved(self, _old: QWidget | None, new: QWidget | None) -> None:
        if self._watched is not None:
            try:
                self._watched.removeEventFilter(self)
            except RuntimeError:  # already deleted
                pass
        self._watched = new
        if new is not None:
            new.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() in _SWALLOWED and isinstance(event, QKeyEvent) and self.matches(event):
            event.accept()
            return True
        return False
