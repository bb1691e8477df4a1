"""The global hotkey that opens the assistant popup (default Ctrl+Alt+Space).

pynput's GlobalHotKeys listens on its own thread (X11's RECORD extension on Linux, hooks on
Windows/macOS); its callback only emits a Qt signal, which Qt queues over to the GUI thread.
Before listening, a key combination another program has already grabbed is reported as a
conflict (X11: an XGrabKey probe answered BadAccess). Where global hotkeys cannot work —
Wayland, no display — `start()` says why in words instead of failing.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

MODIFIERS = {
    "ctrl": "<ctrl>",
    "control": "<ctrl>",
    "alt": "<alt>",
    "option": "<alt>",
    "shift": "<shift>",
    "meta": "<cmd>",
    "super": "<cmd>",
    "win": "<cmd>",
    "cmd": "<cmd>",
}
NAMED_KEYS = {
    "space",
    "enter",
    "tab",
    "esc",
    "backspace",
    "delete",
    "home",
    "end",
    "insert",
    "page_up",
    "page_down",
    "up",
    "down",
    "left",
    "right",
    *(f"f{i}" for i in range(1, 21)),
}
KEY_ALIASES = {
    "return": "enter",
    "escape": "esc",
    "del": "delete",
    "ins": "insert",
    "pgup": "page_up",
    "pgdown": "page_down",
    "pageup": "page_up",
    "pagedown": "page_down",
}
# X11 keysym names for the probe
_X_KEYSYM = {
    "enter": "Return",
    "esc": "Escape",
    "backspace": "BackSpace",
    "delete": "Delete",
    "page_up": "Prior",
    "page_down": "Next",
    "space": "space",
    "tab": "Tab",
    "home": "Home",
    "end": "End",
    "insert": "Insert",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
}


class HotkeyError(ValueError):
    """A hotkey that cannot be used; the message says why in a user's words."""


@dataclass(frozen=True, slots=True)
class Hotkey:
    modifiers: tuple[str, ...]  # "<ctrl>", "<alt>", "<shift>", "<cmd>"
    key: str  # "space", "f5", "k"

    @classmethod
    def parse(cls, text: str) -> Hotkey:
        parts = [p.strip().lower() for p in text.replace(" ", "").split("+")] if text.strip() else []
        if not parts or any(not p for p in parts):
            raise HotkeyError(f"{text!r} is not a key combination; write it like Ctrl+Alt+Space")
        mods: list[str] = []
        keys: list[str] = []
        for p in parts:
            if p in MODIFIERS:
                if MODIFIERS[p] not in mods:
                    mods.append(MODIFIERS[p])
            else:
                k = KEY_ALIASES.get(p, p)
                if k not in NAMED_KEYS and not (len(k) == 1 and k.isprintable()):
                    raise HotkeyError(f"unknown key {p!r} in {text!r}")
                keys.append(k)
        if len(keys) != 1:
            raise HotkeyError(
                f"{text!r} needs exactly one key besides the modifiers (Ctrl, Alt, Shift, Super)"
            )
        if not mods:
            raise HotkeyError(
                f"{text!r} needs a modifier (Ctrl, Alt, Shift or Super): a bare key would fire while typing"
            )
        order = ["<ctrl>", "<alt>", "<shift>", "<cmd>"]
        return cls(tuple(sorted(mods, key=order.index)), keys[0])

    def pynput(self) -> str:
        key = f"<{self.key}>" if self.key in NAMED_KEYS else self.key
        return "+".join([*self.modifiers, key])

    def label(self) -> str:
        names = {"<ctrl>": "Ctrl", "<alt>": "Alt", "<shift>": "Shift", "<cmd>": "Super"}
        key = self.key.upper() if len(self.key) <= 3 else self.key.replace("_", " ").title()
        return "+".join([*(names[m] for m in self.modifiers), key])


def unsupported_reason(env: dict[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why global hotkeys cannot work here, or None when they can."""
    env = dict(os.environ) if env is None else env
    platform = platform or sys.platform
    if platform.startswith("linux"):
        if env.get("XDG_SESSION_TYPE") == "wayland" or (
            env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")
        ):
            return (
                "Wayland does not let apps listen for global hotkeys: bind a shortcut in your "
                "desktop's keyboard settings to the command `byenatos` (it opens the running app)"
            )
        if not env.get("DISPLAY"):
            return "no X display (DISPLAY is not set), so there is no global hotkey"
    return None


def x11_conflict(hotkey: Hotkey, display_name: str | None = None) -> str | None:
    """If another X client already grabbed this combination, say which combination; else None."""
    try:
        from Xlib import XK, X, error
        from Xlib import display as xdisplay
    except ImportError:
        return None
    masks = {"<ctrl>": X.ControlMask, "<alt>": X.Mod1Mask, "<shift>": X.ShiftMask, "<cmd>": X.Mod4Mask}
    try:
        d = xdisplay.Display(display_name)
    except Exception as e:  # no server: nothing to conflict with, the listener will say more
        log.debug("X probe: %s", e)
        return None
    try:
        name = _X_KEYSYM.get(hotkey.key) or (
            hotkey.key.upper() if re.fullmatch(r"f\d+", hotkey.key) else hotkey.key
        )
        keysym = XK.string_to_keysym(name)
        keycode = d.keysym_to_keycode(keysym)
        if not keycode:
            return f"{hotkey.label()}: this keyboard has no such key"
        mods = 0
        for m in hotkey.modifiers:
            mods |= masks[m]
        root = d.screen().root
        catcher = error.CatchError(error.BadAccess)
        root.grab_key(keycode, mods, True, X.GrabModeAsync, X.GrabModeAsync, onerror=catcher)
        d.sync()
        if catcher.get_error():
            return f"{hotkey.label()} is already used by another program: choose another hotkey in Settings"
        root.ungrab_key(keycode, mods)
        d.sync()
        return None
    finally:
        d.close()


class GlobalHotkey(QObject):
    activated = Signal()
    failed = Signal(str)  # readable reason: unsupported platform, conflict, bad combination

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._listener: Any = None
        self.hotkey: Hotkey | None = None
        self.problem = ""

    @property
    def active(self) -> bool:
        return self._listener is not None

    def start(self, text: str) -> bool:
        """Listen for `text`; False (and `failed` with the reason) when it cannot."""
        self.stop()
        try:
            hotkey = Hotkey.parse(text)
        except HotkeyError as e:
            return self._fail(str(e))
        reason = unsupported_reason()
        if reason:
            return self._fail(reason)
        if sys.platform.startswith("linux"):
            conflict = x11_conflict(hotkey)
            if conflict:
                return self._fail(conflict)
        try:
            from pynput import keyboard  # lazy: it loads Xlib / platform hooks
        except Exception as e:  # ImportError, or a backend that fails at import without a display
            return self._fail(f"global hotkeys are unavailable here ({e})")
        try:
            listener = keyboard.GlobalHotKeys({hotkey.pynput(): self._fire})
            listener.daemon = True
            listener.start()
            listener.wait()  # until it really listens: a press right after start() must count
        except Exception as e:
            return self._fail(f"could not listen for {hotkey.label()}: {e}")
        self._listener, self.hotkey, self.problem = listener, hotkey, ""
        return True

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
            listener.join(2)  # its X connection closes before the app (or the X server) goes

    def _fire(self) -> None:
        # pynput's thread: only emit; Qt delivers it to the GUI thread (queued connection).
        self.activated.emit()

    def _fail(self, reason: str) -> bool:
        self.problem = reason
        log.info("global hotkey: %s", reason)
        self.failed.emit(reason)
        return False
