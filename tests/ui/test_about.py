"""The About box: the installed version (the one `byenatos --version` prints), the gateway, the data
folder, Python and Qt; reachable from the tray menu and the window; copies diagnostics.

Every test here is async, so that Qt events (clicks, shows) are processed inside the qasync loop's
run: processed outside it, they would step the runtime's tasks with no running loop.
"""

from __future__ import annotations

import importlib.metadata
import platform

import pytest
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QApplication

from app.ui.about import AboutDialog
from app.ui.main_window import MainWindow
from tests.ui.conftest import running_desktop


async def test_the_version_is_the_installed_package_version_and_the_clis(runtime, qtbot, capsys) -> None:
    about = AboutDialog(runtime)
    qtbot.addWidget(about)
    assert about.version_label.text() == importlib.metadata.version("byenatos")
    from app.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"byenatos {about.version_label.text()}"


async def test_it_shows_the_gateway_data_folder_python_and_qt(runtime, qtbot) -> None:
    about = AboutDialog(runtime)
    qtbot.addWidget(about)
    assert runtime.gateway_url and about.gateway_label.text() == f"{runtime.gateway_url}/v1"
    assert about.data_label.text() == str(runtime.kernel.paths.data_dir)
    assert about.python_label.text().startswith(platform.python_version())
    assert about.qt_label.text().startswith(qVersion())


async def test_the_gateway_line_follows_the_gateway(runtime, qtbot) -> None:
    about = AboutDialog(runtime)
    qtbot.addWidget(about)
    await runtime.stop_gateway()
    assert about.gateway_label.text() == "stopped"
    await runtime.start_gateway()
    assert about.gateway_label.text() == f"{runtime.gateway_url}/v1"


async def test_copy_diagnostics_puts_the_facts_on_the_clipboard(runtime, qtbot) -> None:
    about = AboutDialog(runtime)
    qtbot.addWidget(about)
    QApplication.clipboard().clear()
    qtbot.mouseClick(about.copy_button, Qt.MouseButton.LeftButton)
    text = QApplication.clipboard().text()
    version = importlib.metadata.version("byenatos")
    assert text.splitlines()[0] == f"ByenatOS {version} (from source)"
    assert f"Gateway: {runtime.gateway_url}/v1" in text
    assert f"Data folder: {runtime.kernel.paths.data_dir}" in text
    assert f"Qt: {qVersion()}" in text and f"Python: {platform.python_version()}" in text
    assert about.copy_button.text() == "Copied"


async def test_the_windows_about_button_opens_one_box(runtime, qtbot) -> None:
    window = MainWindow(runtime)
    qtbot.addWidget(window)
    window.show()
    assert window.about is None  # nothing built until asked for
    qtbot.mouseClick(window.about_button, Qt.MouseButton.LeftButton)
    about = window.about
    assert about is not None and about.isVisible()
    assert about.version_label.text() == importlib.metadata.version("byenatos")
    about.close()
    qtbot.mouseClick(window.about_button, Qt.MouseButton.LeftButton)
    assert window.about is about and about.isVisible()  # the same box again, not a second one


@pytest.fixture
async def desktop(kernel, qapp, autostart_home):
    async with running_desktop(kernel, qapp) as app:
        yield app


async def test_the_tray_menu_entry_opens_the_about_box(desktop) -> None:
    actions = {a.text(): a for a in desktop.tray.menu.actions()}
    assert desktop.window.about is None
    actions["About ByenatOS"].trigger()
    about = desktop.window.about
    assert about is not None and about.isVisible()
    assert about.version_label.text() == importlib.metadata.version("byenatos")
    assert about.gateway_label.text() == f"{desktop.runtime.gateway_url}/v1"
