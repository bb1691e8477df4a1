"""The Socket view: a drag into the socket swaps the model (checked in the kernel), Enter does too,
failures read as sentences, fallback chains edit by drop and keyboard."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeyEvent
from PySide6.QtWidgets import QApplication

from app.ui.views.socket_view import SocketView
from tests.ui.conftest import wait_signal


def drop_on(widget, mime) -> None:
    """What Qt delivers when a drag ends over `widget` (the same event path as a real mouse drag;
    for item views that is their viewport)."""
    pos = QPoint(widget.width() // 2, widget.height() // 2)
    QApplication.sendEvent(
        widget,
        QDragEnterEvent(
            pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        ),
    )
    QApplication.sendEvent(
        widget,
        QDropEvent(
            QPointF(pos),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        ),
    )


async def test_cards_for_every_chat_model_and_the_current_one_in_the_socket(runtime_with_openai, qtbot):
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    assert set(view.cards) == {"fake/gpt-fake-mini", "fake/gpt-fake-large"}
    current = runtime_with_openai.kernel.default_model().id
    assert view.cards[current].state == "serving"
    assert view.socket.model_name == current.split("/", 1)[1]


async def test_dragging_a_card_into_the_socket_swaps_the_model(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    view.show()
    target = next(mid for mid in view.cards if mid != kernel.default_model().id)
    drop_on(view.socket, view.cards[target].mime_data())
    assert view.socket.phase == "swapping"
    await view._swap_task
    assert kernel.default_model().id == target  # the kernel's socket holds the new model
    assert view.socket.phase == "done" and view.socket.model_name == target.split("/", 1)[1]
    assert "Now serving" in view.status.text()
    assert view.cards[target].state == "serving"
    assert kernel.socket.aliases()[0].last_swap.strategy.value == "graceful"  # the default strategy


async def test_keyboard_enter_on_a_card_swaps_with_the_chosen_strategy(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    view.strategy.setCurrentIndex(view.strategy.findData("IMMEDIATE"))
    target = next(mid for mid in view.cards if mid != kernel.default_model().id)
    QApplication.sendEvent(
        view.cards[target],
        QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Return, Qt.KeyboardModifier.NoModifier),
    )
    await view._swap_task
    assert kernel.default_model().id == target
    assert kernel.socket.aliases()[0].last_swap.strategy.value == "immediate"


async def test_a_failed_swap_is_a_readable_message_and_nothing_changes(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    before = kernel.default_model().id
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    view.swap_to("fake/no-such-model")
    await view._swap_task
    assert view.socket.phase == "failed"
    assert "Could not swap to fake/no-such-model" in view.banner.text
    assert "Traceback" not in view.banner.text
    assert kernel.default_model().id == before


async def test_fallback_chain_by_drop_and_keyboard(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    current = kernel.default_model().id
    other = next(mid for mid in view.cards if mid != current)
    drop_on(view.fallbacks.viewport(), view.cards[other].mime_data())
    drop_on(view.fallbacks.viewport(), view.cards[current].mime_data())
    assert list(runtime_with_openai.alias_config("default").fallbacks) == [other, current]
    view.fallbacks.setCurrentRow(1)
    QApplication.sendEvent(
        view.fallbacks, QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    )
    assert list(runtime_with_openai.alias_config("default").fallbacks) == [current, other]
    QApplication.sendEvent(
        view.fallbacks, QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Delete, Qt.KeyboardModifier.NoModifier)
    )
    assert list(runtime_with_openai.alias_config("default").fallbacks) == [other]


async def test_a_swap_from_elsewhere_updates_the_socket(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    target = next(mid for mid in view.cards if mid != kernel.default_model().id)
    await kernel.socket.swap("default", target)  # e.g. the CLI or the tray
    await wait_signal(
        runtime_with_openai.bridge.socketChanged, check=lambda e: type(e).__name__ == "SwapFinished"
    )
    assert view.cards[target].state == "serving"
    assert view.socket.model_name == target.split("/", 1)[1]


async def test_latency_shows_on_cards_after_requests(runtime_with_openai, qtbot):
    from app.kernel.canonical import ChatRequest

    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    await runtime_with_openai.kernel.chat(
        ChatRequest(model="default", messages=[{"role": "user", "content": "hi"}])
    )
    (event,) = await wait_signal(runtime_with_openai.bridge.requestFinished)
    assert view.cards[event.model].latency.text().startswith("~")


async def test_a_new_socket_starts_with_the_current_model(runtime_with_openai, qtbot):
    kernel = runtime_with_openai.kernel
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    dialog = view.ask_new_alias()
    dialog.setTextValue("code")
    dialog.accept()  # emits textValueSelected → create_alias
    await wait_signal(runtime_with_openai.bridge.socketChanged, check=lambda e: getattr(e, "alias", "") == "code"
                      and type(e).__name__ == "SwapFinished")
    assert runtime_with_openai.alias_config("code").model == kernel.default_model().id
    await view.create_alias("writing")
    assert view.alias_box.currentText() == "writing"
    assert [s.config.alias for s in runtime_with_openai.aliases()] == ["code", "default", "writing"]


async def test_a_bad_socket_name_is_explained(runtime_with_openai, qtbot):
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    task = view.create_alias("no spaces please")
    try:
        await task
    except Exception:
        pass
    assert "must be letters, digits" in view.banner.text


async def test_a_slow_swap_can_be_cancelled_and_the_old_model_stays(runtime_with_openai, qtbot, monkeypatch):
    import asyncio

    kernel = runtime_with_openai.kernel
    before = kernel.default_model().id
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    started = asyncio.Event()

    async def slow_swap(model_id, **kw):  # a BACKGROUND swap still loading a big model
        started.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(runtime_with_openai, "swap", slow_swap)
    task = view.swap_to("fake/gpt-fake-large" if before != "fake/gpt-fake-large" else "fake/gpt-fake-mini")
    await started.wait()
    assert view.cancel_button.isVisibleTo(view)
    view.cancel_button.click()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert "cancelled" in view.status.text() and not view.cancel_button.isVisibleTo(view)
    assert kernel.default_model().id == before and view.socket.phase == "idle"


async def test_first_run_says_no_models_plainly_and_nothing_can_be_plugged(runtime, qtbot):
    from app.ui.main_window import MainWindow

    window = MainWindow(runtime, tray_available=False)
    qtbot.addWidget(window)
    window.show()
    view = window.view("Socket")
    assert not view.cards
    assert view.empty.isVisibleTo(view) and not view.card_grid.isVisibleTo(view)
    assert view.empty.findChild(type(view.status), "EmptyTitle").text() == "No models yet"
    assert view.empty_text.objectName() != "Muted"  # not small grey text
    assert not view.plug_button.isEnabled()
    window.show_view("Settings")
    view.empty_button.click()  # "Open Marketplace"
    assert window.current_view().title == "Marketplace"
    from app.ui import tasks

    await tasks.cancel_all()


async def test_the_plug_button_is_off_when_every_model_shown_is_in_the_socket(runtime_with_openai, qtbot):
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    assert view.plug_button.isEnabled()
    current = runtime_with_openai.current_model_id()
    view.search.setText(current.split("/", 1)[1])  # only the serving card is shown
    assert not view.plug_button.isEnabled()
