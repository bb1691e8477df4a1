"""Real desktop plumbing for the desktop tools' tests: an Xvfb display, a private D-Bus session
bus, and on it a notification server (org.freedesktop.Notifications, over jeepney) that records
what notify-send sends it."""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass, field

import pytest


@pytest.fixture
def xvfb():
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed")
    proc = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "320x240x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode().strip()  # Xvfb writes the display number once it is ready
    try:
        yield f":{line}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def session_bus():
    """A private session bus: its address (nothing of the developer's desktop is touched)."""
    if not shutil.which("dbus-daemon"):
        pytest.skip("dbus-daemon is not installed")
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    address = proc.stdout.readline().decode().strip()  # printed once it listens
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class NotificationServer:
    received: list[tuple[str, str, str]] = field(default_factory=list)  # (app name, summary, body)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def notification_server(session_bus):
    from jeepney import HeaderFields, MessageType, new_error, new_method_return
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    server = NotificationServer()

    def serve() -> None:
        with open_dbus_connection(bus=session_bus) as conn:
            conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.Notifications"))
            server.ready.set()
            while not server.stop.is_set():
                try:
                    msg = conn.receive(timeout=0.2)  # wakes to see `stop`
                except TimeoutError:
                    continue
                if msg.header.message_type is not MessageType.method_call:
                    continue
                member = msg.header.fields.get(HeaderFields.member)
                if member == "Notify":
                    app, _replaces, _icon, summary, body = msg.body[:5]
                    server.received.append((app, summary, body))  # recorded before the reply
                    conn.send(new_method_return(msg, "u", (len(server.received),)))
                elif member == "GetServerInformation":
                    conn.send(new_method_return(msg, "ssss", ("fake", "byenatos-tests", "1", "1.2")))
                elif member == "GetCapabilities":
                    conn.send(new_method_return(msg, "as", (["body"],)))
                else:
                    conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert server.ready.wait(10), "the notification server did not start"
    yield server
    server.stop.set()
    thread.join(10)
