"""The assistant popup: asks through the real gateway, streams the answer from a fake upstream."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from app.ui.popup import AssistantPopup
from tests.fakes.upstream import Fault


@pytest.fixture
async def make_popup(qtbot):
    made: list[AssistantPopup] = []

    def make(runtime) -> AssistantPopup:
        popup = AssistantPopup(runtime)
        qtbot.addWidget(popup)
        made.append(popup)
        return popup

    yield make
    for popup in made:
        await popup.aclose()  # the HTTP client closes on the loop that opened it


async def test_enter_streams_the_answer_as_markdown(runtime_with_openai, openai_upstream, make_popup):
    openai_upstream.reply_text = "Here is **bold** and a list:\n\n- one\n- two"
    popup = make_popup(runtime_with_openai)
    popup.open()
    assert popup.isVisible() and popup.model.currentData() == "default"
    popup.input.setText("What is a GGUF file?")
    task = popup.ask()
    await task
    assert popup.text == openai_upstream.reply_text
    assert "bold" in popup.answer.toPlainText() and "**" not in popup.answer.toPlainText()  # rendered
    assert "<b>" in popup.answer.toHtml() or "font-weight" in popup.answer.toHtml()
    assert popup.copy_button.isEnabled()
    seen = openai_upstream.requests[-1]
    assert seen.body["stream"] is True
    assert seen.body["messages"][-1]["content"] == "What is a GGUF file?"
    popup.copy_answer()
    assert QApplication.clipboard().text() == openai_upstream.reply_text


async def test_the_chosen_model_is_used_and_remembered(runtime_with_openai, openai_upstream, make_popup):
    popup = make_popup(runtime_with_openai)
    popup.open()
    i = popup.model.findData("fake/gpt-fake-large")
    popup.model.setCurrentIndex(i)
    popup.model.activated.emit(i)
    popup.input.setText("hi")
    await popup.ask()
    assert openai_upstream.requests[-1].body["model"] == "gpt-fake-large"
    assert runtime_with_openai.prefs.popup_model == "fake/gpt-fake-large"


async def test_upstream_errors_read_as_a_sentence(runtime_with_openai, openai_upstream, make_popup):
    openai_upstream.fault = Fault(kind="status", status=401, message="Incorrect API key provided.")
    popup = make_popup(runtime_with_openai)
    popup.open()
    popup.input.setText("hi")
    failures: list[str] = []
    popup.failed.connect(failures.append)
    task = popup.ask()
    try:
        await task
    except Exception:
        pass
    assert failures and "Traceback" not in failures[0]
    assert popup.answer.toPlainText().startswith("Sorry — ")
    assert popup.status.text() == "Could not answer"


async def test_no_gateway_is_explained(runtime_with_openai, make_popup):
    await runtime_with_openai.stop_gateway()
    popup = make_popup(runtime_with_openai)
    popup.input.setText("hi")
    failures: list[str] = []
    popup.failed.connect(failures.append)
    task = popup.ask()
    try:
        await task
    except Exception:
        pass
    assert failures == ["the local gateway is not running (stopped)"]


async def test_escape_closes_and_stops_the_answer(runtime_with_openai, openai_upstream, make_popup):
    openai_upstream.chunk_delay = 0.2
    openai_upstream.reply_text = " ".join(["word"] * 50)
    popup = make_popup(runtime_with_openai)
    popup.open()
    popup.input.setText("long answer please")
    task = popup.ask()
    QApplication.sendEvent(
        popup, QKeyEvent(QKeyEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier)
    )
    assert not popup.isVisible()
    try:
        await task
    except BaseException:
        pass
    assert task.cancelled()


async def test_with_no_model_the_popup_offers_to_add_one(runtime, make_popup):
    """Not `byenatos models scan` in raw backticks: a sentence and a button."""
    popup = make_popup(runtime)
    popup.open()
    assert popup.no_model.isVisibleTo(popup) and popup.add_model_button.text() == "Add a model…"
    assert "`" not in popup.no_model_text.text()
    popup.input.setText("hi")
    assert popup.ask() is None  # nothing is sent anywhere
    assert not popup.answer.isVisibleTo(popup) and popup.status.text() == "No model yet"
    asked: list[str] = []
    runtime.bridge.openViewRequested.connect(asked.append)
    popup.add_model_button.click()
    assert asked == ["Marketplace"] and not popup.isVisible()


async def test_the_footer_names_the_model_and_its_provider(runtime_with_openai, make_popup):
    popup = make_popup(runtime_with_openai)
    popup.open()
    popup.input.setText("hi")
    await popup.ask()
    name = runtime_with_openai.current_model_id().split("/", 1)[1]
    assert popup.status.text().startswith(f"{name} · fake · ")


async def test_kernel_errors_show_commands_as_code_not_backticks(runtime_with_openai, make_popup):
    popup = make_popup(runtime_with_openai)
    popup._failed("no model available yet: run `byenatos models scan`")
    assert "`" not in popup.answer.toPlainText()
    assert "<code>" in popup.answer.toHtml() or "monospace" in popup.answer.toHtml()
