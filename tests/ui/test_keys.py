"""The assistant's global hotkey (Ctrl+Alt+Space) also reaches the focused widget: it must not plug
a model in, click a button or toggle a switch there (issue 19, must-fix 2). Only a bare Space or
Enter acts on a model card."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QKeyEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QCheckBox

from app.ui import tasks
from app.ui.main_window import MainWindow
from app.ui.views.socket_view import SocketView
from tests.ui.conftest import until

CTRL_ALT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier


def press(widget, key, mods=Qt.KeyboardModifier.NoModifier, text: str = " ") -> None:
    QApplication.sendEvent(widget, QKeyEvent(QKeyEvent.Type.KeyPress, key, mods, text))
    QApplication.sendEvent(widget, QKeyEvent(QKeyEvent.Type.KeyRelease, key, mods, text))


async def test_ctrl_alt_space_on_a_focused_card_does_not_plug_it_in(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    before = kernel.default_model().id
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    target = next(mid for mid in view.cards if mid != before)
    card = view.cards[target]
    asked: list[str] = []
    card.plugRequested.connect(asked.append)
    for mods in (
        CTRL_ALT,
        Qt.KeyboardModifier.ControlModifier,
        Qt.KeyboardModifier.AltModifier,
        Qt.KeyboardModifier.ShiftModifier,
        Qt.KeyboardModifier.MetaModifier,
    ):
        press(card, Qt.Key.Key_Space, mods)
        press(card, Qt.Key.Key_Return, mods, "\r")
    assert asked == [] and view._swap_task is None
    assert kernel.default_model().id == before
    press(card, Qt.Key.Key_Enter, Qt.KeyboardModifier.KeypadModifier, "\r")  # the keypad's Enter is plain
    press(card, Qt.Key.Key_Space)
    assert asked == [target, target]
    await view._swap_task
    assert kernel.default_model().id == target


async def test_the_global_hotkey_does_not_act_on_whatever_has_the_focus(runtime_with_openai, qtbot):
    """In the window, the hotkey is swallowed before any widget sees it: a focused card, the
    "Plug selected model in" button (Qt buttons click on Space whatever the modifiers), a check box."""
    kernel = runtime_with_openai.kernel
    before = kernel.default_model().id
    window = MainWindow(runtime_with_openai, tray_available=False)
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    await until(QGuiApplication.instance().focusWindowChanged, window.isActiveWindow)
    view = window.view("Socket")
    target = next(mid for mid in view.cards if mid != before)
    box = QCheckBox("a switch", view)
    box.show()
    for widget in (view.cards[target], view.plug_button, box):
        widget.setFocus(Qt.FocusReason.TabFocusReason)
        assert QApplication.focusWidget() is widget
        QTest.keyClick(widget, Qt.Key.Key_Space, CTRL_ALT)
    assert view._swap_task is None and not box.isChecked()
    assert kernel.default_model().id == before
    # A bare Space still does what it always did.
    QTest.keyClick(box, Qt.Key.Key_Space)
    assert box.isChecked()
    # With the hotkey turned off (or changed), Ctrl+Alt+Space is an ordinary key again.
    runtime_with_openai.prefs.hotkey = "Ctrl+Shift+K"
    box.setFocus()
    QTest.keyClick(box, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert box.isChecked()
    QTest.keyClick(box, Qt.Key.Key_Space, CTRL_ALT)
    assert not box.isChecked()
    await tasks.cancel_all()  # the view's health probe
