"""`byenatos` as a user runs it: the window comes up, a second launch defers to the first, SIGTERM
quits cleanly. Real processes on the offscreen platform."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "BYENATOS_HOME": str(home), "BYENATOS_SECRETS": "file", "QT_QPA_PLATFORM": "offscreen",
           "BYENATOS_ANNOUNCE_SHOWN": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    env.pop("DISPLAY", None)
    return env


def test_second_launch_defers_to_the_first_and_sigterm_quits_cleanly(tmp_path):
    env = _env(tmp_path / "home")
    first = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = first.stdout.readline()  # blocks until the window is on screen (or the process died)
        assert line.startswith("BYENATOS_SHOWN"), (line, first.stderr.read() if first.poll() is not None else "")
        second = subprocess.run([sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0
        assert "already running" in second.stdout
        assert first.poll() is None  # the first one is still there
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # the databases were closed cleanly: a new launch starts on the same home at once
    again = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert again.stdout.readline().startswith("BYENATOS_SHOWN")
        again.send_signal(signal.SIGTERM)
        assert again.wait(30) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
