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


# -- tools: the popup runs the calls of an answer in the kernel ---------------------------------
@pytest.fixture
async def runtime_with_agent_model(kernel, agent_upstream, runtime):
    """The desktop runtime with a fake model that answers with tool calls, streamed."""
    agent_upstream.scripted_streams = True
    await kernel.add_provider("fake", "openai", base_url=agent_upstream.api_base)
    await kernel.refresh_provider("fake")
    await kernel.set_default_model("fake/gpt-fake-mini")
    return runtime


async def test_the_popup_searches_memory_with_a_tool_and_answers_from_it(
        runtime_with_agent_model, agent_upstream, make_popup):
    from app.kernel.personal.service import Caller

    kernel = runtime_with_agent_model.kernel
    await kernel.personal.add({"id": "rec-lisbon", "highlight": "Flight to Lisbon on 14 May, seat 12A"},
                              Caller.user())
    agent_upstream.plan = [[("memory_search", {"query": "Lisbon flight"})]]
    popup = make_popup(runtime_with_agent_model)
    popup.open()
    popup.input.setText("When do I fly to Lisbon?")
    await popup.ask()
    first, second = agent_upstream.chat_bodies[-2:]
    assert "memory_search" in {t["function"]["name"] for t in first["tools"]}
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and "14 May" in tool_message["content"]  # read in the kernel
    assert "used memory_search" in popup.text and "14 May" in popup.text  # the final answer quotes it
    assert not popup.approval.isVisible()  # reading asks nobody


async def _approval_asked(kernel):
    from app.kernel.tools.approvals import ApprovalRequested

    sub = kernel.events.subscribe(accepts=lambda e: isinstance(e, ApprovalRequested))
    try:
        return await sub.queue.get()
    finally:
        sub.close()


@pytest.mark.parametrize("answer", ["once", "deny"])
async def test_a_tool_that_writes_asks_in_the_popup_first(runtime_with_agent_model, agent_upstream, make_popup,
                                                           answer):
    import asyncio

    kernel = runtime_with_agent_model.kernel
    agent_upstream.plan = [[("file_write", {"path": "note.txt", "content": "buy milk"})]]
    popup = make_popup(runtime_with_agent_model)
    popup.open()
    popup.input.setText("Write 'buy milk' to note.txt")
    asked = asyncio.ensure_future(_approval_asked(kernel))
    task = popup.ask()
    request = await asyncio.wait_for(asked, 30)
    assert request.tool == "file_write" and popup.approval.isVisible()
    assert "file_write" in popup.approval_text.text()
    (popup.approve_once if answer == "once" else popup.approve_deny).click()
    await task
    written = kernel.paths.data_dir / "assistant" / "note.txt"
    tool_message = agent_upstream.chat_bodies[-1]["messages"][-1]
    if answer == "once":
        assert written.read_text() == "buy milk" and "used file_write" in popup.text
    else:
        assert not written.exists() and "not allowed" in popup.text
        assert "Do not retry" in tool_message["content"]  # the model is told in words it can act on
    assert not popup.approval.isVisible()
