"""The Personalization view over the kernel's personal service: the PSP preview shows injected
records and rules, rules edit and pin, memory search and forget, pause, export, delete-all."""

from __future__ import annotations

import asyncio
import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.kernel.personal.service import Caller
from app.ui.views.personalization import PersonalizationView

NOTES = Caller("notes-app", frozenset({"hinata:write"}))


@pytest.fixture
async def view(runtime, qtbot):
    await runtime.kernel.personal.ready()
    v = PersonalizationView(runtime)
    qtbot.addWidget(v)
    return v


async def test_preview_shows_the_records_an_app_would_receive(view, runtime):
    personal = runtime.kernel.personal
    await personal.add([{"highlight": "The violin lesson moved to Thursday at 5pm", "tag": ["music"]}], NOTES)
    view.activated()
    await view.refreshing  # its preview (for you) must not land after the ones below
    view.app_box.setCurrentText("notes-app")
    view.question.setText("when is the violin lesson?")
    await view.preview()
    assert "violin lesson moved to Thursday" in view.psp_text.toPlainText()
    assert "Personal System Prompt" in view.psp_text.toPlainText()
    assert view.psp_info.text().startswith("For notes-app:")
    layers = [
        view.layers.topLevelItem(i).text(0).split(" — ")[0] for i in range(view.layers.topLevelItemCount())
    ]
    assert layers == ["Core", "Working", "Context", "Buffer"]
    assert sum(view.layers.topLevelItem(i).childCount() for i in range(4)) >= 1
    # each ranked item shows its weighted total score, which lies in [0, 1]
    shown = [view.layers.topLevelItem(i).child(j).text(1) for i in range(1, 4)
             for j in range(view.layers.topLevelItem(i).childCount())]
    assert all(0.0 <= float(v) <= 1.0 for v in shown)
    # an app may see only what it may see: another app gets nothing of notes-app's private record
    view.app_box.setCurrentText("other-app")
    await view.preview()
    assert "violin" not in view.psp_text.toPlainText()


async def test_core_rules_add_pin_and_remove(view, runtime):
    await view.refresh_all()
    view.new_rule.setText("Answer in British English")
    view.new_pinned.setChecked(True)
    await view.add_rule()
    assert view.rules.count() == 1 and view.rules.item(0).checkState() == Qt.CheckState.Checked
    assert "British English" in view.psp_text.toPlainText()
    rules = await runtime.kernel.personal.rules(Caller.user())
    assert rules[0]["text"] == "Answer in British English" and rules[0]["pinned"]
    view.rules.setCurrentRow(0)
    await view.remove_rule()
    assert view.rules.count() == 0
    assert await runtime.kernel.personal.rules(Caller.user()) == []


async def test_memory_search_and_forget(view, runtime):
    personal = runtime.kernel.personal
    await personal.add(
        [{"highlight": "sailing trip to Brittany"}, {"highlight": "tax return due in May"}], NOTES
    )
    await view.refresh_all()
    assert view.table.rowCount() == 2
    view.search.setText("sailing")
    await view.load_records()
    assert view.table.rowCount() == 1 and "Brittany" in view.table.item(0, 2).text()
    view.table.selectRow(0)
    await view.forget_selected()
    assert (await personal.search(Caller.user()))["total"] == 1
    assert view.banner.text == "Forgot 1 record."


async def test_pause_export_and_delete_everything(view, runtime, tmp_path, qtbot):
    personal = runtime.kernel.personal
    await personal.add([{"highlight": "likes green tea"}], NOTES)
    await personal.add_rule("Be brief", False, Caller.user())
    view.activated()
    view.pause.setChecked(True)
    assert personal.paused and "paused" in view.status.text()
    view.pause.setChecked(False)
    assert not personal.paused

    out = tmp_path / "export.jsonl"
    await view.export_to(out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(r.get("highlight") == "likes green tea" for r in lines)
    assert any(r.get("kind") == "core_rule" and r["text"] == "Be brief" for r in lines)

    box = view.confirm_delete_all()
    assert box.defaultButton() == box.button(QMessageBox.StandardButton.Cancel)  # safe default
    box.done(QMessageBox.StandardButton.Cancel)
    assert (await personal.search(Caller.user()))["total"] == 1  # cancel keeps everything
    await view.delete_all()
    assert (await personal.search(Caller.user()))["total"] == 0
    assert await personal.rules(Caller.user()) == []


async def test_per_app_injection_switch(view, runtime):
    personal = runtime.kernel.personal
    personal.set_injection("notes-app", False)
    view.activated()
    items = {view.injection.item(i).text(): view.injection.item(i) for i in range(view.injection.count())}
    items["notes-app"].setCheckState(Qt.CheckState.Checked)
    assert personal.injection("notes-app") is True


async def test_an_older_preview_finishing_late_does_not_replace_a_newer_one(view, runtime, monkeypatch):
    personal = runtime.kernel.personal
    await personal.add([{"highlight": "The violin lesson moved to Thursday at 5pm", "tag": ["music"]}], NOTES)
    build = personal.build_psp
    first_started, release_first = asyncio.Event(), asyncio.Event()

    async def slow_first(caller, question):
        psp = await build(caller, question)
        if caller.app == "notes-app":
            first_started.set()
            await release_first.wait()  # the first preview is still being built...
        return psp

    monkeypatch.setattr(personal, "build_psp", slow_first)
    view.app_box.setCurrentText("notes-app")
    view.question.setText("when is the violin lesson?")
    first = view.preview()
    await first_started.wait()
    view.app_box.setCurrentText("other-app")
    await view.preview()  # ...when the user asks for another app's
    release_first.set()
    await first
    assert "violin" not in view.psp_text.toPlainText() and view.psp_info.text().startswith("For other-app:")
