"""Desktop tools: open a URL or a file with the desktop's handler, read and write the clipboard,
show a notification. Each uses the platform's own commands (xdg-open, xclip/xsel/wl-clipboard
and notify-send on Linux; open, pbcopy/pbpaste and osascript on macOS; os.startfile and
PowerShell on Windows) and says plainly which one is missing when none is there.

Only http, https and file targets are opened, and a file only inside the folders the caller may
use (app.kernel.tools.files): `desktop_open` must not become a way to run programs (a
`javascript:`, `smb:` or custom-scheme URL, an executable's path) or to show the user's other
files. Text is handed to the commands as arguments or on stdin, never through a shell.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from app.kernel.events import Event
from app.kernel.tools.base import Risk, Tool, ToolContext, ToolError, required_str
from app.kernel.tools.files import resolve

MAX_CLIPBOARD = 100_000  # characters read or written
OPEN_WAIT_S = 5.0  # an opener still running after this (a browser it started in the foreground) is left be
COMMAND_S = 10.0  # clipboard and notification commands


@dataclass(frozen=True, slots=True)
class Notified(Event):
    """A tool showed the user a notification (the desktop app's tray shows it too)."""

    app: str
    title: str
    body: str
    shown: bool  # the desktop's notifier took it


# -- running the platform's commands ----------------------------------------------------------


async def _run(argv: list[str], *, stdin: bytes | None = None, timeout: float = COMMAND_S,
               env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    """Run a command to its end: exit code, stdout, stderr. stderr goes to a file, stdout to a
    pipe only when it is read: clipboard owners (xclip, wl-copy) fork a child that keeps the
    selection and would hold a pipe open for as long as it lives."""
    with tempfile.TemporaryFile() as err:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL if stdin is not None else asyncio.subprocess.PIPE,
                stderr=err, env=env, start_new_session=True)
        except OSError as e:
            raise ToolError(f"could not run {argv[0]}: {e}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ToolError(f"{Path(argv[0]).name} did not answer within {timeout:g} s") from None
        err.seek(0)
        return proc.returncode or 0, out or b"", err.read()


def _words(stderr: bytes, code: int) -> str:
    text = stderr.decode(errors="replace").strip()
    return text.splitlines()[-1] if text else f"exit code {code}"


# -- open ---------------------------------------------------------------------------------------


def _target(ctx: ToolContext, given: str) -> tuple[str, str]:
    """What to hand the opener, and its kind ("url" or "file"); refuses everything else."""
    if any(ord(c) < 32 or c == "\x7f" for c in given):
        raise ToolError("argument 'target': no control characters")
    parts = urlsplit(given)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise ToolError(f"{given!r} has no host name")
        if " " in given:
            raise ToolError(f"{given!r} is not a valid URL (spaces must be written %20)")
        return given, "url"
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ToolError("file URLs on other machines are not opened")
        given = unquote(parts.path)
    elif scheme and not (len(scheme) == 1 and sys.platform == "win32"):  # C:\… is a path
        raise ToolError(f"only http, https and file targets are opened, not {scheme}:")
    path, _ = resolve(ctx, given)
    if not path.exists():
        raise ToolError(f"no file or folder {given!r}")
    if path.is_file() and os.access(path, os.X_OK) and os.name == "posix":
        # xdg-open runs a .desktop file or an executable script: opening must never mean running.
        raise ToolError(f"{given!r} is an executable; it is not opened")
    if path.suffix.lower() in (".desktop", ".exe", ".bat", ".cmd", ".com", ".msi", ".ps1", ".vbs", ".scr",
                               ".app", ".command", ".jar", ".lnk", ".url"):
        raise ToolError(f"{given!r} is a program or a launcher; it is not opened")
    return str(path), "file"


async def desktop_open(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    given = required_str(args, "target", max_len=4_096)
    target, kind = await asyncio.to_thread(_target, ctx, given)
    if sys.platform == "win32":
        await asyncio.to_thread(os.startfile, target)  # type: ignore[attr-defined]
        return {"opened": target, "kind": kind, "with": "os.startfile"}
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    found = shutil.which(opener)
    if found is None:
        raise ToolError(f"nothing here opens {kind}s: {opener} is not installed"
                        + (" (the xdg-utils package)" if opener == "xdg-open" else ""))
    with tempfile.TemporaryFile() as err:
        proc = await asyncio.create_subprocess_exec(found, target, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=err,
                                                    start_new_session=True)
        try:
            code = await asyncio.wait_for(proc.wait(), OPEN_WAIT_S)
        except TimeoutError:
            return {"opened": target, "kind": kind, "with": opener}  # still running: its handler is up
        err.seek(0)
        if code:
            raise ToolError(f"{opener} could not open {given!r}: {_words(err.read(), code)}")
    return {"opened": target, "kind": kind, "with": opener}


# -- clipboard ------------------------------------------------------------------------------------


def _clipboard_commands() -> tuple[list[str], list[str]]:
    """(read, write) commands of this desktop's clipboard, or ToolError naming what is missing."""
    if sys.platform == "darwin":
        return ["pbpaste"], ["pbcopy"]
    if sys.platform == "win32":
        ps = shutil.which("powershell") or shutil.which("pwsh") or "powershell"
        return ([ps, "-NoProfile", "-Command", "Get-Clipboard -Raw"],
                [ps, "-NoProfile", "-Command", "$input | Out-String | Set-Clipboard"])
    if os.environ.get("WAYLAND_DISPLAY") and shutil.which("wl-paste") and shutil.which("wl-copy"):
        return ["wl-paste", "--no-newline"], ["wl-copy"]
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise ToolError("no clipboard: this session has no display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
    if os.environ.get("DISPLAY"):
        if shutil.which("xclip"):
            return ["xclip", "-selection", "clipboard", "-o"], ["xclip", "-selection", "clipboard", "-i"]
        if shutil.which("xsel"):
            return ["xsel", "--clipboard", "--output"], ["xsel", "--clipboard", "--input"]
    raise ToolError("no clipboard tool: install xclip or xsel (X11) or wl-clipboard (Wayland)")


# What the tools print when the clipboard holds no text: an empty clipboard, not a failure.
_EMPTY = ("target STRING not available", "Nothing is copied", "No selection", "No suitable type of content")


async def clipboard_read(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    read, _ = _clipboard_commands()
    code, out, err = await _run(read)
    if code:
        if any(e in err.decode(errors="replace") for e in _EMPTY):
            return {"text": "", "empty": True}
        raise ToolError(f"could not read the clipboard ({Path(read[0]).name}): {_words(err, code)}")
    text = out.decode("utf-8", errors="replace")
    if sys.platform == "win32":
        text = text.removesuffix("\r\n")
    return {"text": text[:MAX_CLIPBOARD], "empty": not text, "truncated": len(text) > MAX_CLIPBOARD}


async def clipboard_write(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    text = args.get("text")
    if not isinstance(text, str) or len(text) > MAX_CLIPBOARD:
        raise ToolError(f"argument 'text': a string of at most {MAX_CLIPBOARD} characters")
    _, write = _clipboard_commands()
    code, _, err = await _run(write, stdin=text.encode("utf-8"))
    if code:
        raise ToolError(f"could not write the clipboard ({Path(write[0]).name}): {_words(err, code)}")
    return {"written": len(text)}


# -- notify ----------------------------------------------------------------------------------------

_WINDOWS_TOAST = (
    "Add-Type -AssemblyName System.Windows.Forms; $n = New-Object System.Windows.Forms.NotifyIcon; "
    "$n.Icon = [System.Drawing.SystemIcons]::Information; $n.Visible = $true; "
    "$n.ShowBalloonTip(10000, $env:BYENATOS_TITLE, $env:BYENATOS_BODY, 'Info'); Start-Sleep -Seconds 1; $n.Dispose()")


def _notifier(title: str, body: str) -> tuple[list[str], dict[str, str] | None] | str:
    """The command that shows a notification here, or why there is none."""
    if sys.platform == "darwin":
        # The texts are arguments of the script, never spliced into it.
        return ["osascript", "-e", "on run argv", "-e",
                "display notification (item 2 of argv) with title (item 1 of argv)", "-e", "end run",
                title, body], None
    if sys.platform == "win32":
        ps = shutil.which("powershell") or shutil.which("pwsh")
        if ps is None:
            return "PowerShell is not available"
        return [ps, "-NoProfile", "-Command", _WINDOWS_TOAST], {**os.environ, "BYENATOS_TITLE": title,
                                                                "BYENATOS_BODY": body}
    if shutil.which("notify-send") is None:
        return "notify-send is not installed (the libnotify-bin package)"
    return ["notify-send", "--app-name=ByenatOS", "--", title, body], None


async def notify(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    title = required_str(args, "title", max_len=200)
    body = args.get("body", "")
    if not isinstance(body, str) or len(body) > 2_000:
        raise ToolError("argument 'body': a string of at most 2000 characters")
    found = _notifier(title, body)
    detail = ""
    shown = False
    if isinstance(found, str):
        detail = found
    else:
        code, _, err = await _run(found[0], env=found[1])
        shown = code == 0
        detail = "" if shown else f"{Path(found[0][0]).name}: {_words(err, code)}"
    events = ctx.services.get("events")
    if events is not None:
        events.publish(Notified(app=ctx.app, title=title, body=body, shown=shown))
    if not shown and events is None:
        raise ToolError(f"could not show a notification: {detail}")
    return {"shown": shown, "published": events is not None, **({"detail": detail} if detail else {})}


_STR = {"type": "string"}


def tools() -> list[Tool]:
    return [
        Tool("desktop_open", "Open a web page (http or https URL) in the user's browser, or a file or folder "
             "(a path, or a file: URL, in this agent's working folder or an allowed folder) with the program "
             "the desktop uses for it. Programs and launchers are not opened.",
             {"type": "object", "properties": {"target": _STR}, "required": ["target"],
              "additionalProperties": False},
             desktop_open, risk=Risk.NETWORK, timeout_s=30.0),
        Tool("clipboard_read", "Read the text on the user's clipboard.",
             {"type": "object", "properties": {}, "additionalProperties": False},
             clipboard_read, timeout_s=20.0),
        Tool("clipboard_write", "Put text on the user's clipboard (replacing what is there).",
             {"type": "object", "properties": {"text": _STR}, "required": ["text"], "additionalProperties": False},
             clipboard_write, risk=Risk.WRITE, timeout_s=20.0),
        Tool("notify", "Show the user a desktop notification (a title and a short text).",
             {"type": "object", "properties": {"title": _STR, "body": _STR}, "required": ["title"],
              "additionalProperties": False},
             notify, timeout_s=20.0),
    ]
