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


async def test_the_focus_ring_is_not_the_serving_border(runtime_with_openai, qtbot, qapp):
    """Two cards must not both look selected: the serving card has a solid accent border on a
    tinted ground, the focused one a dashed ring."""
    from app.ui.theme import ACCENT, apply_theme

    apply_theme(qapp, "light")  # the app's style sheet (the tests' windows run without it)
    try:
        view = SocketView(runtime_with_openai)
        qtbot.addWidget(view)
        view.resize(900, 500)
        view.show()
        view.activateWindow()
        await until(QGuiApplication.instance().focusWindowChanged, view.isActiveWindow)
        serving = next(c for c in view.cards.values() if c.state == "serving")
        other = next(c for c in view.cards.values() if c is not serving)
        other.setFocus(Qt.FocusReason.TabFocusReason)
        assert other.hasFocus() and not serving.hasFocus()

        def top_edge(card) -> list[str]:
            image = card.grab().toImage()
            return [image.pixelColor(x, 1).name() for x in range(12, card.width() - 12)]  # in the border

        def ground(card) -> str:
            return card.grab().toImage().pixelColor(card.width() - 5, card.height() // 2).name()

        serving_edge, focus_edge = top_edge(serving), top_edge(other)
        assert set(serving_edge) == {ACCENT}  # solid, all accent
        assert ACCENT not in focus_edge and len(set(focus_edge)) > 1  # dashed, not the accent
        assert ground(serving) != ground(other)  # the serving card's ground is tinted
    finally:
        apply_theme(qapp, "system")
