"""The global hotkey: parsing, platform checks, thread hand-over, conflicts (real X server if present)."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from app.ui.hotkey import GlobalHotkey, Hotkey, HotkeyError, unsupported_reason, x11_conflict


@pytest.mark.parametrize(
    ("text", "pynput", "label"),
    [
        ("Ctrl+Alt+Space", "<ctrl>+<alt>+<space>", "Ctrl+Alt+Space"),
        ("alt+ctrl+space", "<ctrl>+<alt>+<space>", "Ctrl+Alt+Space"),
        ("Super+K", "<cmd>+k", "Super+K"),
        ("Ctrl+Shift+F5", "<ctrl>+<shift>+<f5>", "Ctrl+Shift+F5"),
        ("Meta+Return", "<cmd>+<enter>", "Super+Enter"),
    ],
)
def test_parse(text, pynput, label):
    hk = Hotkey.parse(text)
    assert hk.pynput() == pynput and hk.label() == label


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not a key combination"),
        ("Space", "needs a modifier"),
        ("Ctrl+Alt", "exactly one key"),
        ("Ctrl+A+B", "exactly one key"),
        ("Ctrl+Banana", "unknown key"),
    ],
)
def test_bad_hotkeys_are_explained(text, why):
    with pytest.raises(HotkeyError, match=why):
        Hotkey.parse(text)


def test_wayland_and_headless_are_reported_not_crashed():
    assert "Wayland" in unsupported_reason(
        {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux"
    )
    assert "DISPLAY" in unsupported_reason({}, "linux")
    assert unsupported_reason({"DISPLAY": ":0"}, "linux") is None
    assert unsupported_reason({}, "win32") is None


def test_start_without_a_display_fails_readably(qapp, qtbot, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    hk = GlobalHotkey()
    with qtbot.waitSignal(hk.failed) as blocker:
        assert hk.start("Ctrl+Alt+Space") is False
    assert "DISPLAY" in blocker.args[0] and not hk.active


def test_callback_on_the_listener_thread_reaches_the_gui_thread(qapp, qtbot):
    hk = GlobalHotkey()
    seen: list[bool] = []
    hk.activated.connect(lambda: seen.append(threading.current_thread() is threading.main_thread()))
    with qtbot.waitSignal(hk.activated, timeout=5000):
        threading.Thread(target=hk._fire).start()  # what pynput's thread does
    assert seen == [True]


@pytest.fixture
def xvfb(tmp_path):
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed")
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    line = proc.stdout.readline().decode().strip()  # Xvfb writes the display number once it is ready
    try:
        yield f":{line}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_combination_grabbed_by_another_program_is_a_conflict(xvfb):
    from Xlib import XK, X, display

    hk = Hotkey.parse("Ctrl+Alt+Space")
    assert x11_conflict(hk, xvfb) is None  # free: nobody holds it
    other = display.Display(xvfb)  # another program grabs it
    code = other.keysym_to_keycode(XK.string_to_keysym("space"))
    other.screen().root.grab_key(code, X.ControlMask | X.Mod1Mask, True, X.GrabModeAsync, X.GrabModeAsync)
    other.sync()
    try:
        conflict = x11_conflict(hk, xvfb)
        assert conflict is not None and "already used by another program" in conflict
    finally:
        other.close()
    assert x11_conflict(hk, xvfb) is None  # released when that program quits


# pynput's Xorg listener can sit in its RECORD loop after stop() until the next X event arrives;
# when this test's X server goes away first, that daemon thread dies with a broken pipe.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_pressing_the_hotkey_on_a_real_x_server_fires(xvfb, qapp, qtbot, monkeypatch):
    """pynput listening on Xvfb; the key press is synthesised with the XTEST extension."""
    from Xlib import XK, X, display
    from Xlib.ext import xtest

    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    hk = GlobalHotkey()
    assert hk.start("Ctrl+Alt+Space"), hk.problem
    d = display.Display(xvfb)
    try:
        codes = [d.keysym_to_keycode(XK.string_to_keysym(k)) for k in ("Control_L", "Alt_L", "space")]
        with qtbot.waitSignal(hk.activated, timeout=10_000):
            for code in codes:
                xtest.fake_input(d, X.KeyPress, code)
            for code in reversed(codes):
                xtest.fake_input(d, X.KeyRelease, code)
            d.sync()
    finally:
        hk.stop()
        d.close()
    assert not hk.active
