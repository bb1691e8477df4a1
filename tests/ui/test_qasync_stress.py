"""The process survives HTTP serving on the qasync loop while a thread completes futures into it.

This is the PySide6 6.12.0 failure mode (the interpreter aborts within seconds); the run is
bounded (3 s) and happens in a child process so a crash fails this test, not the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_qasync_survives_http_and_cross_thread_futures():
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ui.qasync_stress", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"the process died ({proc.returncode}): {proc.stderr[-2000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["requests"] > 500, result  # it really served
    assert result["futures"] > 500, result  # and really took thread hand-overs
