"""The desktop app's own preferences (hotkey, theme, start at login), beside the kernel's settings.

Kept in `desktop.json` in the config dir so the headless daemon never needs to know about
them; validated by pydantic and written atomically like the kernel's settings.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Literal

from pydantic import BaseModel, ValidationError

from app.kernel.config import Paths

log = logging.getLogger(__name__)

DEFAULT_HOTKEY = "Ctrl+Alt+Space"
Theme = Literal["system", "light", "dark"]


class DesktopPreferences(BaseModel):
    hotkey: str = DEFAULT_HOTKEY
    hotkey_enabled: bool = True
    start_at_login: bool = False
    theme: Theme = "system"
    popup_model: str = "default"  # what the assistant popup asks; "default" follows the socket
    tray_hint_shown: bool = False  # "still running in the tray" is said once, not on every close


def load_preferences(paths: Paths) -> DesktopPreferences:
    f = paths.config_dir / "desktop.json"
    if not f.exists():
        return DesktopPreferences()
    try:
        return DesktopPreferences.model_validate(json.loads(f.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as e:
        # A broken file must not keep the app from opening: defaults, and say so in the log.
        log.warning("desktop preferences %s are not valid, using defaults: %s", f, e)
        return DesktopPreferences()


def save_preferences(paths: Paths, prefs: DesktopPreferences) -> None:
    f = paths.config_dir / "desktop.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(prefs.model_dump_json(indent=2), encoding="utf-8")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, f)
