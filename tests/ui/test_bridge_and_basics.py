"""The bridge (kernel events → Qt signals), single instance, autostart, preferences, tasks."""

from __future__ import annotations

import plistlib
import sys
from dataclasses import dataclass

import pytest

from app.kernel.events import Event, RequestFinished
from app.kernel.monitor.hardware import HardwareSample
from tests.ui.conftest import wait_signal


def _finished(
    model: str = "fake/gpt-fake-mini", outcome: str = "ok", app: str | None = "editor"
) -> RequestFinished:
    return RequestFinished(
        model=model,
        provider="fake",
        app=app,
        stream=False,
        latency_ms=42.0,
        prompt_tokens=5,
        completion_tokens=7,
        cost=0.001,
        outcome=outcome,
    )


async def test_kernel_events_arrive_as_qt_signals(runtime):
    bus = runtime.kernel.events
    bus.publish(_finished())
    (event,) = await wait_signal(runtime.bridge.requestFinished)
    assert event.model == "fake/gpt-fake-mini" and event.latency_ms == 42.0

    sample = HardwareSample(cpu_percent=12.0, ram_used=1, ram_total=2, process_rss=3)
    bus.publish(sample)
    (got,) = await wait_signal(runtime.bridge.hardwareSample)
    assert got is sample


async def test_events_the_bridge_does_not_know_still_arrive_on_event(runtime):
    @dataclass(frozen=True, slots=True)
    class SomethingNew(Event):
        what: str

    runtime.kernel.events.publish(SomethingNew(what="later issue"))
    (event,) = await wait_signal(runtime.bridge.event, check=lambda e: isinstance(e, SomethingNew))
    assert event.what == "later issue"


def test_second_launch_activates_the_first(qapp, qtbot, home):
    from app.kernel.config import Paths
    from app.ui.instance import SingleInstance, server_name

    name = server_name(Paths.default())
    first = SingleInstance(name)
    assert first.claim()
    try:
        second = SingleInstance(name)
        with qtbot.waitSignal(first.activated, timeout=5000):
            assert second.claim() is False
    finally:
        first.release()
    third = SingleInstance(name)  # the first quit: the next launch is the instance now
    assert third.claim()
    third.release()


def test_instances_of_different_homes_do_not_collide(tmp_path):
    from app.kernel.config import Paths
    from app.ui.instance import server_name

    a = server_name(Paths(tmp_path / "a", tmp_path / "a", tmp_path / "a"))
    b = server_name(Paths(tmp_path / "b", tmp_path / "b", tmp_path / "b"))
    assert a != b and a.startswith("byenatos-") and len(a) < 40


def test_xdg_autostart_entry(autostart_home):
    from app.ui.autostart import Autostart

    auto = Autostart(platform="linux")
    assert not auto.is_enabled()
    auto.set_enabled(True)
    entry = (autostart_home / "xdg-config" / "autostart" / "byenatos.desktop").read_text()
    assert entry.startswith("[Desktop Entry]") and "Type=Application" in entry
    exec_line = next(line for line in entry.splitlines() if line.startswith("Exec="))
    assert "byenatos" in exec_line or "-m app" in exec_line
    assert auto.is_enabled()
    auto.set_enabled(False)
    assert not auto.is_enabled()


def test_macos_launch_agent_is_a_valid_plist(tmp_path):
    from app.ui.autostart import LABEL, Autostart

    auto = Autostart(platform="darwin", home=tmp_path)
    auto.set_enabled(True)
    plist = plistlib.loads((tmp_path / "Library" / "LaunchAgents" / f"{LABEL}.plist").read_bytes())
    assert plist["Label"] == LABEL and plist["RunAtLoad"] is True and plist["ProgramArguments"]
    assert auto.is_enabled()
    auto.set_enabled(False)
    assert not auto.is_enabled()


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the Run key is tested on Windows only")
def test_windows_backend_needs_winreg():
    from app.ui.autostart import Autostart

    with pytest.raises(ImportError):
        Autostart(platform="win32").is_enabled()


def test_broken_preferences_fall_back_to_defaults(home):
    from app.kernel.config import Paths
    from app.ui.preferences import DEFAULT_HOTKEY, load_preferences, save_preferences

    paths = Paths.default().ensure()
    (paths.config_dir / "desktop.json").write_text("{not json")
    prefs = load_preferences(paths)
    assert prefs.hotkey == DEFAULT_HOTKEY
    prefs.theme = "dark"
    save_preferences(paths, prefs)
    assert load_preferences(paths).theme == "dark"


async def test_spawned_task_failures_become_one_readable_line(runtime):
    from app.kernel.errors import ModelNotFoundError
    from app.ui.tasks import spawn

    seen: list[str] = []

    async def boom():
        raise ModelNotFoundError("no model 'x'; known: a, b")

    task = spawn(boom(), on_error=seen.append)
    with pytest.raises(ModelNotFoundError):
        await task
    assert seen == ["no model 'x'; known: a, b"]
