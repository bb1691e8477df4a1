"""Start at login: XDG autostart on Linux, the Run key on Windows, a LaunchAgent on macOS.

Each backend writes the platform's own standard entry that runs `byenatos` (the app) with
no arguments. Only the Linux one can be exercised here; the others are written to the
same contract and their file/registry content is checked where that is possible.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from pathlib import Path

ENTRY_NAME = "byenatos"
LABEL = "org.byenatos.desktop"


def launch_command() -> list[str]:
    """How to start the app: the installed `byenatos` script, else this Python with `-m app`."""
    script = Path(sys.executable).with_name("byenatos")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "app"]


class Autostart:
    """Enable, disable and query start-at-login for this platform."""

    def __init__(self, platform: str | None = None, home: Path | None = None) -> None:
        self.platform = platform or sys.platform
        self.home = home or Path.home()

    # -- where ------------------------------------------------------------------------------
    @property
    def desktop_file(self) -> Path:
        config = os.environ.get("XDG_CONFIG_HOME") or str(self.home / ".config")
        return Path(config) / "autostart" / f"{ENTRY_NAME}.desktop"

    @property
    def launch_agent(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    # -- what -------------------------------------------------------------------------------
    def is_enabled(self) -> bool:
        if self.platform.startswith("win"):
            return self._win_get() is not None
        if self.platform == "darwin":
            return self.launch_agent.exists()
        return self.desktop_file.exists()

    def set_enabled(self, enabled: bool) -> None:
        if self.platform.startswith("win"):
            self._win_set(enabled)
        elif self.platform == "darwin":
            self._file_set(self.launch_agent, self.launch_agent_plist() if enabled else None)
        else:
            self._file_set(self.desktop_file, self.desktop_entry().encode() if enabled else None)

    def desktop_entry(self) -> str:
        # Exec quoting follows the Desktop Entry spec's rules closely enough for paths with spaces.
        exec_line = " ".join(shlex.quote(a) for a in launch_command())
        return (
            "[Desktop Entry]\nType=Application\nName=ByenatOS\n"
            "Comment=Personal AI runtime: one local socket for every LLM\n"
            f"Exec={exec_line}\nIcon=byenatos\nTerminal=false\nCategories=Utility;\n"
            "X-GNOME-Autostart-enabled=true\n"
        )

    def launch_agent_plist(self) -> bytes:
        return plistlib.dumps(
            {
                "Label": LABEL,
                "ProgramArguments": launch_command(),
                "RunAtLoad": True,
                "ProcessType": "Interactive",
            }
        )

    def _file_set(self, path: Path, content: bytes | None) -> None:
        if content is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)

    # -- Windows: HKCU\Software\Microsoft\Windows\CurrentVersion\Run -----------------------------
    _RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"

    def _win_get(self) -> str | None:
        import winreg  # type: ignore[import-not-found]

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self._RUN_KEY) as key:
                return str(winreg.QueryValueEx(key, "ByenatOS")[0])
        except OSError:
            return None

    def _win_set(self, enabled: bool) -> None:
        import winreg  # type: ignore[import-not-found]

        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self._RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
            if enabled:
                cmd = " ".join(f'"{a}"' if " " in a else a for a in launch_command())
                winreg.SetValueEx(key, "ByenatOS", 0, winreg.REG_SZ, cmd)
            else:
                try:
                    winreg.DeleteValue(key, "ByenatOS")
                except FileNotFoundError:
                    pass
