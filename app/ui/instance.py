"""One running app per user (per ByenatOS home): a second launch brings the first to the front.

The first instance listens on a QLocalServer (a Unix socket / Windows named pipe) named
after the config dir; a later launch connects, says "activate" and exits. A stale socket
left by a crashed instance (nobody answers) is removed and taken over.

`byenatos serve` holds no such socket: a launch finds a daemon running for the same home
through the runtime file (app.kernel.runtime_file) and does not start a second kernel on
the same databases.
"""

from __future__ import annotations

import getpass
import hashlib
import os

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app.kernel import runtime_file
from app.kernel.config import Paths
from app.kernel.runtime_file import RunningInstance

ACTIVATE = b"activate\n"
CONNECT_TIMEOUT_MS = 500


def server_name(paths: Paths) -> str:
    """Per user and per home, short enough for a Unix socket path."""
    digest = hashlib.sha1(f"{getpass.getuser()}:{paths.config_dir.resolve()}".encode()).hexdigest()[:16]
    return f"byenatos-{digest}"


def running_elsewhere(paths: Paths) -> RunningInstance | None:
    """Another ByenatOS (a `byenatos serve`, or an app whose window socket is gone) serving this
    home: its runtime file is fresh and its gateway answers. None when there is none."""
    info = runtime_file.find(paths)
    return info if info is not None and info.pid != os.getpid() else None


def running_address(paths: Paths) -> str | None:
    """The gateway address the running instance wrote, unchecked (for a message)."""
    info = runtime_file.read(paths)
    return info.url if info is not None else None


class SingleInstance(QObject):
    activated = Signal()  # another launch asked us to come to the front

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._server: QLocalServer | None = None

    def claim(self) -> bool:
        """True: we are the only instance (now listening). False: another one was told to show itself."""
        if self._notify_running():
            return False
        QLocalServer.removeServer(self.name)  # a crashed instance's leftover socket file
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)  # owner only
        if not server.listen(self.name):
            # Lost a race with a launch that started at the same moment: defer to it.
            return not self._notify_running()
        server.newConnection.connect(self._on_connection)
        self._server = server
        return True

    def release(self) -> None:
        if self._server is not None:
            self._server.newConnection.disconnect(self._on_connection)
            self._server.close()
            self._server.deleteLater()
            self._server = None

    def _notify_running(self) -> bool:
        sock = QLocalSocket()
        sock.connectToServer(self.name)
        if not sock.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        sock.write(ACTIVATE)
        sock.waitForBytesWritten(CONNECT_TIMEOUT_MS)
        sock.disconnectFromServer()
        if sock.state() != QLocalSocket.LocalSocketState.UnconnectedState:
            sock.waitForDisconnected(CONNECT_TIMEOUT_MS)
        return True

    def _on_connection(self) -> None:
        assert self._server is not None
        while (conn := self._server.nextPendingConnection()) is not None:
            conn.readyRead.connect(self._on_message)
            conn.disconnected.connect(conn.deleteLater)
            if conn.bytesAvailable():
                self._read(conn)

    def _on_message(self) -> None:
        conn = self.sender()
        if isinstance(conn, QLocalSocket):
            self._read(conn)

    def _read(self, conn: QLocalSocket) -> None:
        if bytes(conn.readAll().data()).startswith(ACTIVATE.strip()):
            self.activated.emit()
