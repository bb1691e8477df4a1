"""UI test harness: async tests run on a qasync loop (the app's own), so Qt and asyncio share it.

Inside async tests, wait for Qt signals with `await wait_signal(...)` — never qtbot.wait*,
which would spin a nested Qt loop inside a running asyncio task.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


_current_loop: asyncio.AbstractEventLoop | None = None


def _qasync_loop() -> asyncio.AbstractEventLoop:
    global _current_loop
    from PySide6.QtWidgets import QApplication

    from app.ui.loop import make_loop

    app = QApplication.instance() or QApplication(["byenatos-tests"])
    # As in the app (tray): closing a test's last window must not quit the loop under a test.
    app.setQuitOnLastWindowClosed(False)
    _current_loop = make_loop(app)
    return _current_loop


def _patch_pytestqt_event_processing() -> None:
    """pytest-qt calls processEvents() between setup, call and teardown, outside the asyncio loop's
    run: qasync would then step pending tasks with no running loop (asyncio objects bind to None,
    timeouts fail with "no running event loop"). While a test's qasync loop is open, Qt events
    are processed only inside that loop's runs, as in the app; after it closes, as usual."""
    import pytestqt.plugin as plugin

    original = plugin._process_events

    def process_events() -> None:
        loop = _current_loop
        if loop is not None and not loop.is_closed():
            return
        original()

    plugin._process_events = process_events


_patch_pytestqt_event_processing()


def pytest_asyncio_loop_factories(config, item):
    return {"qasync": _qasync_loop}


async def wait_signal(signal: Any, timeout: float = 10.0, check: Callable[..., bool] | None = None) -> tuple:
    """Await the next emission of a Qt signal (optionally one that passes `check`)."""
    fut: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()

    def slot(*args: Any) -> None:
        if not fut.done() and (check is None or check(*args)):
            fut.set_result(args)

    signal.connect(slot)
    try:
        async with asyncio.timeout(timeout):
            return await fut
    finally:
        signal.disconnect(slot)


def expect_signal(signal: Any, check: Callable[..., bool] | None = None) -> asyncio.Future[tuple]:
    """A future for the next emission of `signal` (passing `check`), listening from now on: for
    signals that may fire before the awaiting code gets to run. Await it with a timeout."""
    fut: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()

    def slot(*args: Any) -> None:
        if not fut.done() and (check is None or check(*args)):
            fut.set_result(args)
            signal.disconnect(slot)

    signal.connect(slot)
    return fut


async def until(signal: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds, looking again after each emission of `signal`."""
    async with asyncio.timeout(timeout):
        while not condition():
            await wait_signal(signal, timeout=timeout)


@pytest.fixture(autouse=True)
def collect_garbage_on_the_gui_thread():
    """Tests drop many Qt objects in reference cycles. Left to the automatic collector, a cycle
    can be freed on whatever thread allocates next (a to_thread worker, pynput's listener), and a
    QObject destroyed off the GUI thread leaves Qt a dangling timer (a segfault much later).
    Collect here instead, on the GUI thread, between tests."""
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.enable()


@pytest.fixture
def autostart_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    return tmp_path


@pytest.fixture
async def runtime(kernel, qapp, autostart_home):
    """A started DesktopRuntime around the test kernel; gateway on a free port, no background scan."""
    from app.ui.runtime import DesktopRuntime

    rt = DesktopRuntime(kernel, gateway_port=0, sample_hardware=False)
    await rt.start(scan=False)
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
async def runtime_with_openai(kernel_with_openai, runtime):
    return runtime


@asynccontextmanager
async def running_desktop(kernel: Any, qapp: Any) -> AsyncIterator[Any]:
    """The whole desktop app (tray, window, popup, runtime) around `kernel`, gateway on a free
    port, no hotkeys or scan; quit and torn down on exit."""
    from app.ui.main import DesktopApp
    from app.ui.runtime import DesktopRuntime

    runtime = DesktopRuntime(kernel, gateway_port=0, sample_hardware=False)
    app = DesktopApp(qapp, runtime, hotkeys=False)
    main = asyncio.ensure_future(app.main(scan=False))
    await wait_signal(runtime.gatewayChanged, check=lambda s: s == "running")
    try:
        yield app
    finally:
        app.quit()
        await main  # shutdown() closes the tray and stops the runtime
        app.window.deleteLater()
        app.popup.deleteLater()
