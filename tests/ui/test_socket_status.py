"""What the Socket view says after a swap is true (issue 19, must-fixes 4, 5 and 6): its own swaps
are its own, automatic ones say from what, when and why, the fallback chain and the health dots
follow the kernel, and every model is named with its provider."""

from __future__ import annotations

import asyncio
import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from app.kernel.canonical import ChatRequest
from app.ui.views.socket_view import SocketView
from tests.fakes.upstream import Fault
from tests.ui.conftest import expect_signal, until, wait_signal
from tests.ui.test_socket_view import drop_on


def finished(alias: str = "default"):
    return lambda e: type(e).__name__ == "SwapFinished" and e.alias == alias


def two_models(runtime) -> tuple[str, str]:
    current = runtime.kernel.default_model().id
    other = next(m.id for m in runtime.models() if m.id != current)
    return current, other


async def test_a_drag_and_enter_in_the_view_are_not_swaps_from_outside(runtime_with_openai, qtbot):
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    view.show()
    bridge = runtime_with_openai.bridge
    current, other = two_models(runtime_with_openai)

    done = expect_signal(bridge.socketChanged, finished())
    drop_on(view.socket, view.cards[other].mime_data())
    await view._swap_task
    await asyncio.wait_for(done, 10)  # the kernel's event came back to the view
    assert "outside" not in view.status.text()
    assert re.fullmatch(r"Now serving gpt-fake-\w+ · fake — swapped in \d+ ms\.", view.status.text())
    assert view.socket.phase == "done"

    done = expect_signal(bridge.socketChanged, finished())
    QApplication.sendEvent(
        view.cards[current],
        QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Return, Qt.KeyboardModifier.NoModifier),
    )
    await view._swap_task
    await asyncio.wait_for(done, 10)
    assert "outside" not in view.status.text() and view.status.text().startswith("Now serving")
    assert view.socket.phase == "done"

    # A swap somebody else makes still says so.
    await runtime_with_openai.kernel.socket.swap("default", other)
    await wait_signal(bridge.socketChanged, check=finished())
    assert "from outside this view" in view.status.text()
    assert f"{other.split('/')[1]} · fake" in view.status.text()


async def test_an_automatic_swap_says_from_what_when_and_why(runtime_with_openai, openai_upstream, qtbot):
    kernel = runtime_with_openai.kernel
    bridge = runtime_with_openai.bridge
    primary, fallback = two_models(runtime_with_openai)
    kernel.socket.configure("default", fallbacks=[fallback])
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    assert view.fallbacks.ids() == [fallback]

    # The primary answers 500 until its circuit opens; the ERROR trigger moves the socket.
    body = '{"error": {"message": "model overloaded", "type": "server_error"}}'
    openai_upstream.fault = Fault(kind="status", status=500, message=body, times=3)
    auto = expect_signal(bridge.autoSwapped)
    await kernel.chat(ChatRequest(model="default", messages=[{"role": "user", "content": "hi"}]))
    (notice,) = await asyncio.wait_for(auto, 10)
    assert (notice.from_model, notice.to_model, notice.trigger) == (primary, fallback, "error")

    text = view.status.text()
    old, new = (f"{m.split('/')[1]} · fake" for m in (primary, fallback))
    assert text.startswith(f"Now serving {new} — swapped automatically from {old} at ")
    assert re.search(r" at \d\d:\d\d:\d\d because ", text)
    assert f"because {old} was failing" in text
    assert "{" not in text and "b'" not in text  # the upstream's JSON is read, not shown
    # The kernel put the failing model first in the chain: the list says so at once.
    assert view.fallbacks.ids() == [primary]
    assert view.fallbacks.item(0).text() == old
    assert view.socket.model_name == fallback.split("/")[1] and view.socket.model_provider == "fake"
    assert view.cards[fallback].state == "serving"
    # The failed model is cooling down: its dot is not green, and says why in words.
    card = view.cards[primary]
    assert card.health_state == "cooling"
    assert "cooling down" in card.health.text()
    assert "{" not in card.health.toolTip()

    # A view opened later tells the same story.
    later = SocketView(runtime_with_openai)
    qtbot.addWidget(later)
    assert later.status.text() == text
    assert later.cards[primary].health_state == "cooling"


async def test_health_dots_follow_the_routers_health_events(runtime_with_openai, qtbot):
    from app.kernel.events import HealthChanged

    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    primary, other = two_models(runtime_with_openai)
    bridge = runtime_with_openai.bridge
    bridge.emit_event(
        HealthChanged(model=primary, provider="fake", ok=False,
                      detail="upstream error: b'{\"error\": {\"message\": \"GPU out of memory\"}}' [fake]")
    )
    card = view.cards[primary]
    assert card.health_state == "cooling" and card.health.text() == "● cooling down"
    assert card.health.toolTip() == "upstream error: GPU out of memory [fake]"
    assert view.cards[other].health_state == ""  # nothing known about it
    bridge.emit_event(HealthChanged(model=primary, provider="fake", ok=True, detail="recovered"))
    assert card.health_state == "ok"


async def test_the_popups_picker_follows_a_swap(runtime_with_openai, qtbot):
    from app.ui.popup import AssistantPopup

    popup = AssistantPopup(runtime_with_openai)
    qtbot.addWidget(popup)
    popup.open()
    current, other = two_models(runtime_with_openai)
    assert popup.model.itemText(0) == f"default ({current.split('/')[1]} · fake)"
    await runtime_with_openai.kernel.socket.swap("default", other)  # the tray, the CLI, a trigger
    await until(runtime_with_openai.bridge.socketChanged,
                lambda: popup.model.itemText(0) == f"default ({other.split('/')[1]} · fake)")
    assert popup.model.currentData() == "default"
    # Every model in the picker names its provider.
    assert all(popup.model.itemText(i).endswith(" · fake") for i in range(1, popup.model.count()))
    await popup.aclose()


async def test_an_answer_clears_an_unreachable_provider(runtime_with_openai, qtbot):
    """A failed probe said "unreachable"; a request it answered since says otherwise."""
    view = SocketView(runtime_with_openai)
    qtbot.addWidget(view)
    current = runtime_with_openai.current_model_id()
    view.health["fake"] = (False, "HTTP 500")
    view.refresh()
    assert view.cards[current].health_state == "down"
    await runtime_with_openai.kernel.chat(ChatRequest(model="default", messages=[{"role": "user", "content": "hi"}]))
    await until(runtime_with_openai.bridge.requestFinished, lambda: view.cards[current].health_state == "ok")
    assert all(c.health_state == "ok" for c in view.cards.values())
