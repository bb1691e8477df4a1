"""`byenatos` end to end, started the way a user starts it: the console script in its own process
(offscreen), a fresh home, `--port` on the command line. An app sends a HiNATA record through the
gateway over HTTP with its own token; the user types a Core rule into the Personalization view
(tests/ui/e2e_personalization.py, run inside the app through BYENATOS_UI_SCRIPT); the preview
shows both. Issue 19: the app built personal memory before the kernel started and it never ran.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from app.kernel.config import HOME_ENV, Paths

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("e2e_personalization.py")
HIGHLIGHT = "Migrating the billing service from Flask to FastAPI this sprint"
RULE = "Answer in British English, briefly"


def byenatos() -> list[str]:
    """The `byenatos` console script the install made (python -m app where there is none)."""
    exe = Path(sys.executable).with_name("byenatos.exe" if os.name == "nt" else "byenatos")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "app"]


def user_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, HOME_ENV: str(home), "BYENATOS_SECRETS": "file", "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": str(ROOT), **extra}
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "BYENATOS_ANNOUNCE_SHOWN", "BYENATOS_UI_SCRIPT"):
        if var not in extra:
            env.pop(var, None)
    for var in [v for v in env if v.endswith("_API_KEY")]:
        env.pop(var)  # a developer's keys must not become providers here
    return env


def runtime_file(home: Path, monkeypatch) -> Path:
    monkeypatch.setenv(HOME_ENV, str(home))
    return Paths.default().runtime_file


def read_line(proc: subprocess.Popen, marker: str) -> str:
    """The rest of the first stdout line that starts with `marker` (blocks; "" if the process ended)."""
    for line in proc.stdout:
        if line.startswith(marker):
            return line[len(marker):].strip()
    raise AssertionError(f"{marker} never came; exit code {proc.wait()}: {proc.stderr.read()}")


def test_a_record_sent_by_an_app_and_a_rule_typed_in_the_view_are_both_in_the_preview(
        tmp_path, monkeypatch, unused_tcp_port):
    home = tmp_path / "home"
    state = runtime_file(home, monkeypatch)
    app = subprocess.Popen(
        [*byenatos(), "--port", str(unused_tcp_port)], cwd=ROOT, text=True,
        env=user_env(home, BYENATOS_UI_SCRIPT=f"{SCRIPT}:add_rule_and_preview"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_line(app, "E2E_READY")  # the kernel and the gateway are up
        running = json.loads(state.read_text())  # how another program finds the app
        assert running["pid"] == app.pid and running["kind"] == "app"
        url = running["url"]
        assert url == f"http://127.0.0.1:{unused_tcp_port}"  # --port was taken
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as http:
            r = http.post("/api/apps/register", json={"name": "notes", "scopes": ["chat", "hinata:write"]})
            assert r.status_code == 201, r.text
            token = r.json()["token"]
            r = http.post("/api/hinata", json={"highlight": HIGHLIGHT, "tag": ["work", "python"]},
                          headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
        app.stdin.write(json.dumps({"rule": RULE, "question": "how do I test the FastAPI endpoints?",
                                    "highlight": HIGHLIGHT}) + "\n")
        app.stdin.flush()
        shown = json.loads(read_line(app, "E2E_RESULT"))
        assert app.wait(60) == 0, app.stderr.read()
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert shown["banner"] == ""  # no "the personal store is not running"
    assert shown["rules"] == [RULE]
    assert RULE in shown["preview"] and HIGHLIGHT in shown["preview"]
    assert shown["info"].startswith("For you: ")
    assert shown["layers"][0] == "Core — 1 item"
    assert not state.exists()  # a clean quit takes the runtime file away


def test_the_app_does_not_start_a_second_kernel_beside_a_daemon_on_another_port(
        tmp_path, monkeypatch, unused_tcp_port):
    home = tmp_path / "home"
    state = runtime_file(home, monkeypatch)
    daemon = subprocess.Popen([*byenatos(), "serve", "--port", str(unused_tcp_port), "--no-scan"], cwd=ROOT,
                              text=True, env=user_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_line(daemon, "ByenatOS gateway on")
        app = subprocess.run(byenatos(), cwd=ROOT, env=user_env(home), capture_output=True, text=True, timeout=60)
        assert app.returncode == 1
        assert f"already running for this home (`byenatos serve`, pid {daemon.pid}) on " \
               f"http://127.0.0.1:{unused_tcp_port}" in app.stderr
        assert daemon.poll() is None
        assert json.loads(state.read_text())["pid"] == daemon.pid  # the app left the daemon's file alone
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert not state.exists()
