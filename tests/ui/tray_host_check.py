"""Run under an X server with a tray host: does the tray agent's icon land in the tray?

`python -m tests.ui.tray_host_check` prints one JSON line; test_tray_host.py runs it under
Xvfb + trayer (a child process: the test session's QApplication is offscreen).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def main() -> int:
    os.environ.update(BYENATOS_HOME=tempfile.mkdtemp(), BYENATOS_SECRETS="file", QT_QPA_PLATFORM="xcb")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.runtime import DesktopRuntime
    from app.ui.tray import TrayAgent

    app = QApplication(["byenatos-tray-check"])
    runtime = DesktopRuntime(sample_hardware=False)  # not started: the tray must cope
    tray = TrayAgent(runtime)
    result: dict[str, object] = {"available": tray.available, "shown": tray.show()}

    def report() -> None:
        geo = tray.icon.geometry()
        result.update(visible=tray.icon.isVisible(), width=geo.width(), height=geo.height(),
                      menu=[a.text() for a in tray.menu.actions() if a.text()])
        tray.close()
        app.quit()

    QTimer.singleShot(1500, report)  # the tray host embeds the icon asynchronously
    app.exec()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
