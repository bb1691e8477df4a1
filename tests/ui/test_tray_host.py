"""The tray icon under a real X server with a Linux tray host (Xvfb + trayer)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def x_with_tray():
    if not (shutil.which("Xvfb") and shutil.which("trayer")):
        pytest.skip("needs Xvfb and trayer")
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    display = f":{xvfb.stdout.readline().decode().strip()}"
    tray = subprocess.Popen(["trayer", "--edge", "bottom", "--SetDockType", "true"], env={**os.environ,
                            "DISPLAY": display}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # trayer takes the tray selection; no event to await across processes
    try:
        yield display
    finally:
        tray.terminate()
        xvfb.terminate()
        tray.wait(10)
        xvfb.wait(10)


def _wait_for_tray(display: str, timeout: float = 10.0) -> None:
    """Until the tray host owns the system-tray selection (what Qt checks for a tray)."""
    from Xlib import display as xdisplay

    d = xdisplay.Display(display)
    try:
        atom = d.intern_atom("_NET_SYSTEM_TRAY_S0")
        deadline = time.monotonic() + timeout
        while d.get_selection_owner(atom) == 0:  # X.NONE
            if time.monotonic() > deadline:
                pytest.fail("the tray host never took the tray selection")
            time.sleep(0.05)  # another process: there is nothing to await but the X server's answer
    finally:
        d.close()


def test_the_icon_lands_in_a_linux_tray_host(x_with_tray):
    env = {**os.environ, "DISPLAY": x_with_tray}
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run([sys.executable, "-m", "tests.ui.tray_host_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["available"] and result["shown"] and result["visible"], result
    assert result["width"] > 0 and result["height"] > 0, result  # embedded by the host
    assert "Quit ByenatOS" in result["menu"] and "Open assistant" in result["menu"]
