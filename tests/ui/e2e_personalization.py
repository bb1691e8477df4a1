"""Run inside `byenatos` by test_app_end_to_end.py, through BYENATOS_UI_SCRIPT (app.ui.main).

The user's part of the check, with the keyboard on the real window: once the test has sent a
HiNATA record through the gateway (from its own process, as an app does) it writes one line of
JSON to this process's standard input — the rule to add and the question to ask. This script
then opens Personalization, types the rule into "New Core rule" and presses Enter, types the
question and presses Enter, and prints what the view shows as one `E2E_RESULT {json}` line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

DEADLINE_S = 30.0


async def until(check: Any, what: str, view: Any) -> None:
    """Poll `check()` while the app runs (its loop keeps serving Qt and the kernel meanwhile)."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if view.banner.text:  # the view reported a failure: the result says which
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Personalization view never showed {what}")
        await asyncio.sleep(0.05)


def rules_of(view: Any) -> list[str]:
    return [view.rules.item(i).text() for i in range(view.rules.count())]


async def add_rule_and_preview(desktop: Any) -> None:
    print("E2E_READY", flush=True)
    asked = json.loads(await asyncio.to_thread(sys.stdin.readline))
    win = desktop.window
    win.show_view("Personalization")
    view = win.view("Personalization")
    if view.refreshing is not None:
        await asyncio.wait([view.refreshing])  # its failures land in the banner, as a user sees them
    QTest.keyClicks(view.new_rule, asked["rule"])
    QTest.keyClick(view.new_rule, Qt.Key.Key_Return)
    await until(lambda: asked["rule"] in rules_of(view), "the new rule", view)
    QTest.keyClicks(view.question, asked["question"])
    QTest.keyClick(view.question, Qt.Key.Key_Return)
    # the preview a user reads in the end: an earlier one (before the rule) may still be on screen
    await until(lambda: all(t in view.psp_text.toPlainText() for t in (asked["rule"], asked["highlight"])),
                "the rule and the record in the preview", view)
    result = {
        "banner": view.banner.text,
        "rules": rules_of(view),
        "preview": view.psp_text.toPlainText(),
        "info": view.psp_info.text(),
        "layers": [view.layers.topLevelItem(i).text(0) for i in range(view.layers.topLevelItemCount())],
    }
    print("E2E_RESULT " + json.dumps(result), flush=True)
