"""Desktop tools against the real commands: xclip on an Xvfb display, notify-send on a private
D-Bus session with a notification server, and an opener that records what it was handed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.kernel.events import EventBus
from app.kernel.tools.base import Risk, ToolError
from app.kernel.tools.builtin import builtin_tools
from app.kernel.tools.desktop import Notified, clipboard_read, clipboard_write, desktop_open, notify

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux desktop's commands")


def only_on_path(tmp_path: Path, monkeypatch, *commands: str) -> Path:
    """A PATH holding just `commands` (linked from the real ones) and what the test adds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in commands:
        real = shutil.which(name)
        if real is None:
            pytest.skip(f"{name} is not installed")
        (bin_dir / name).symlink_to(real)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


# -- clipboard ----------------------------------------------------------------------------------


@linux
async def test_clipboard_write_then_read_on_a_real_display(make_ctx, xvfb, monkeypatch):
    if not shutil.which("xclip"):
        pytest.skip("xclip is not installed")
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ctx = make_ctx()
    assert await clipboard_read(ctx, {}) == {"text": "", "empty": True}
    text = "Lisbon — tram 28 ✓\nsecond line"
    assert await clipboard_write(ctx, {"text": text}) == {"written": len(text)}
    # another program sees it: the X clipboard itself holds it
    seen = await asyncio.to_thread(subprocess.run, ["xclip", "-selection", "clipboard", "-o"],
                                   env={**os.environ, "DISPLAY": xvfb}, capture_output=True, timeout=10)
    assert seen.stdout.decode() == text
    read = await clipboard_read(ctx, {})
    assert read["text"] == text and not read["empty"] and not read["truncated"]


@linux
async def test_clipboard_without_a_display_says_so(make_ctx, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ToolError, match="no display"):
        await clipboard_read(make_ctx(), {})
    with pytest.raises(ToolError, match="no display"):
        await clipboard_write(make_ctx(), {"text": "x"})


@linux
async def test_clipboard_without_a_clipboard_tool_names_what_to_install(make_ctx, tmp_path, monkeypatch):
    only_on_path(tmp_path, monkeypatch)
    monkeypatch.setenv("DISPLAY", ":99")
    with pytest.raises(ToolError, match="install xclip or xsel"):
        await clipboard_read(make_ctx(), {})


@linux
async def test_clipboard_on_a_display_that_is_gone_is_a_tool_error(make_ctx, monkeypatch):
    if not shutil.which("xclip"):
        pytest.skip("xclip is not installed")
    monkeypatch.setenv("DISPLAY", ":4711")  # nobody serves it
    with pytest.raises(ToolError, match=r"could not (read|write) the clipboard \(xclip\)"):
        await clipboard_write(make_ctx(), {"text": "x"})


async def test_clipboard_write_checks_its_text(make_ctx):
    with pytest.raises(ToolError, match="'text'"):
        await clipboard_write(make_ctx(), {"text": 5})
    with pytest.raises(ToolError, match="at most 100000"):
        await clipboard_write(make_ctx(), {"text": "x" * 100_001})


# -- notify -------------------------------------------------------------------------------------


@linux
async def test_notify_reaches_the_notification_server_and_the_event_bus(make_ctx, notification_server,
                                                                       session_bus, monkeypatch):
    if not shutil.which("notify-send"):
        pytest.skip("notify-send is not installed")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus)
    events = EventBus()
    sub = events.subscribe()
    ctx = make_ctx(events=events)
    result = await notify(ctx, {"title": "Report ready", "body": "'quoted' & \"double\" $(not run)"})
    assert result == {"shown": True, "published": True}
    assert notification_server.received == [("ByenatOS", "Report ready", "'quoted' & \"double\" $(not run)")]
    event = sub.queue.get_nowait()
    assert isinstance(event, Notified) and event.title == "Report ready" and event.shown
    assert event.app == "agent-worker"


@linux
async def test_notify_without_a_notification_server_still_publishes_and_says_why(make_ctx, session_bus,
                                                                                monkeypatch):
    if not shutil.which("notify-send"):
        pytest.skip("notify-send is not installed")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session_bus)  # a bus with no notification server
    events = EventBus()
    sub = events.subscribe()
    result = await notify(make_ctx(events=events), {"title": "hello"})
    assert result["shown"] is False and result["published"] is True
    assert result["detail"].startswith("notify-send: ")
    assert sub.queue.get_nowait().shown is False
    # and with nobody to tell at all, it is an error
    with pytest.raises(ToolError, match="could not show a notification: notify-send"):
        await notify(make_ctx(), {"title": "hello"})


@linux
async def test_notify_without_notify_send_names_the_package(make_ctx, tmp_path, monkeypatch):
    only_on_path(tmp_path, monkeypatch)
    with pytest.raises(ToolError, match="libnotify-bin"):
        await notify(make_ctx(), {"title": "hello"})


async def test_notify_checks_its_arguments(make_ctx):
    for args, message in (({}, "'title'"), ({"title": " "}, "'title'"), ({"title": "t", "body": 3}, "'body'"),
                          ({"title": "t" * 201}, "at most 200")):
        with pytest.raises(ToolError, match=message):
            await notify(make_ctx(), args)


# -- open ---------------------------------------------------------------------------------------


@pytest.fixture
def opener(tmp_path, monkeypatch):
    """An xdg-open that records what it was asked to open (nothing here has a browser)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the opener stands in for xdg-open")
    bin_dir = only_on_path(tmp_path, monkeypatch, "sh")
    log = tmp_path / "opened.txt"
    script = bin_dir / "xdg-open"
    script.write_text(f"#!{shutil.which('sh')}\nprintf '%s\\n' \"$1\" >> {log}\n"
                      "case \"$1\" in *fail*) echo 'xdg-open: no method available for opening it' >&2; exit 3;; esac\n")
    script.chmod(0o755)
    return log


async def test_open_urls(make_ctx, opener):
    ctx = make_ctx()
    result = await desktop_open(ctx, {"target": "https://example.org/a?b=c#d"})
    assert result == {"opened": "https://example.org/a?b=c#d", "kind": "url", "with": "xdg-open"}
    await desktop_open(ctx, {"target": "http://localhost:8484/docs"})
    assert opener.read_text().splitlines() == ["https://example.org/a?b=c#d", "http://localhost:8484/docs"]


@pytest.mark.parametrize(("target", "message"), [
    ("javascript:alert(1)", "not javascript:"),
    ("ftp://example.org/x", "not ftp:"),
    ("smb://server/share", "not smb:"),
    ("vscode://file/etc/passwd", "not vscode:"),
    ("https://", "no host name"),
    ("https://exa mple.org", "spaces"),
    ("https://example.org/\nx", "control characters"),
    ("file://server/share/x.txt", "other machines"),
    ("file:///etc/passwd", "outside"),
    ("/etc/passwd", "outside"),
    ("missing.txt", "no file or folder"),
])
async def test_open_refuses(make_ctx, opener, target, message):
    with pytest.raises(ToolError, match=message):
        await desktop_open(make_ctx(), {"target": target})
    assert not opener.exists()  # nothing was handed to the opener


async def test_open_files_in_the_working_folder_but_never_programs(make_ctx, opener, tool_home):
    _, workdir = tool_home
    (workdir / "report.pdf").write_bytes(b"%PDF-1.4")
    (workdir / "my notes.txt").write_text("x")
    (workdir / "run.sh").write_text("#!/bin/sh\n")
    (workdir / "run.sh").chmod(0o755)
    (workdir / "evil.desktop").write_text("[Desktop Entry]\nExec=rm -rf ~\n")
    ctx = make_ctx()
    assert (await desktop_open(ctx, {"target": "report.pdf"}))["kind"] == "file"
    await desktop_open(ctx, {"target": (workdir / "my notes.txt").resolve().as_uri()})
    assert opener.read_text().splitlines() == [str((workdir / "report.pdf").resolve()),
                                               str((workdir / "my notes.txt").resolve())]
    for program in ("run.sh", "evil.desktop"):
        with pytest.raises(ToolError, match="not opened"):
            await desktop_open(ctx, {"target": program})


async def test_an_opener_that_fails_is_a_tool_error_in_its_words(make_ctx, opener):
    with pytest.raises(ToolError, match=r"xdg-open could not open .*no method available"):
        await desktop_open(make_ctx(), {"target": "https://example.org/fail"})


@linux
async def test_open_without_an_opener_names_the_package(make_ctx, tmp_path, monkeypatch):
    only_on_path(tmp_path, monkeypatch)
    with pytest.raises(ToolError, match="xdg-open is not installed"):
        await desktop_open(make_ctx(), {"target": "https://example.org"})


def test_risk_classes_of_the_desktop_tools():
    registry = builtin_tools()
    assert {n: registry.get(n).risk for n in ("desktop_open", "clipboard_read", "clipboard_write", "notify")} == {
        "desktop_open": Risk.NETWORK, "clipboard_read": Risk.READ, "clipboard_write": Risk.WRITE,
        "notify": Risk.READ}
