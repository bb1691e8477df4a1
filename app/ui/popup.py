"""The assistant popup: a frameless, centred, Spotlight-like box. Type, Enter, the answer streams
in as Markdown; Esc closes (and stops the answer); the model in use is shown and switchable.

It asks through the local gateway over HTTP like any other app (so app tokens and the
Personal System Prompt apply to it too), streaming with an httpx client on the qasync loop.
It offers the model the assistant's tools (app.kernel.tools.assistant: memory, allowed files,
the desktop, ByenatOS itself) and runs the calls of each answer in the kernel, through the same
permissions, approvals and audit as agents; a call that asks shows Allow / Always / Deny here.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import re
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.kernel.errors import ByenatosError
from app.kernel.tools.assistant import MAX_ROUNDS, ToolCallAssembler
from app.ui.runtime import DesktopRuntime
from app.ui.tasks import spawn
from app.ui.widgets.text import in_words, model_label, model_label_for, spec_for_name

log = logging.getLogger(__name__)

APP_NAME = "ByenatOS Assistant"
TOKEN_SECRET = "desktop:assistant-token"
RENDER_EVERY = 0.03  # seconds: re-render Markdown at most ~30 times a second while streaming
_TOOL_STATUS = {"ok": "used {tool}", "error": "{tool} failed", "denied": "{tool}: not allowed",
                "timeout": "{tool}: no answer in time"}


class PopupError(ByenatosError):
    """A readable reason the popup could not answer."""


class AssistantPopup(QWidget):
    answerFinished = Signal(str)  # the whole answer, once streamed
    failed = Signal(str)

    def __init__(self, runtime: DesktopRuntime, parent: QWidget | None = None) -> None:
        super().__init__(
            parent,
            Qt.WindowType.Tool | Qt.WindowType.FramelessWindowHint | Qt.WindowType.WindowStaysOnTopHint,
        )
        self.runtime = runtime
        self.setWindowTitle("ByenatOS Assistant")
        self.setAccessibleName("ByenatOS Assistant")
        self.resize(680, 120)
        frame = QFrame(self)
        frame.setObjectName("Popup")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(frame)
        layout = QVBoxLayout(frame)
        layout.setContentsMargins(14, 10, 14, 10)

        self.input = QLineEdit(frame)
        self.input.setObjectName("PopupInput")
        self.input.setPlaceholderText("Ask anything…")
        self.input.setAccessibleName("Question")
        self.input.returnPressed.connect(self.ask)
        layout.addWidget(self.input)

        self.answer = QTextBrowser(frame)
        self.answer.setOpenExternalLinks(True)
        self.answer.setAccessibleName("Answer")
        self.answer.setMinimumHeight(220)
        self.answer.hide()
        layout.addWidget(self.answer, 1)

        # With no model at all: say so, and offer the way to add one (not CLI commands).
        self.no_model = QFrame(frame)
        self.no_model.setObjectName("EmptyState")
        nm = QHBoxLayout(self.no_model)
        self.no_model_text = QLabel(
            "ByenatOS has no model yet. Add a provider or download a model to ask anything.", self.no_model
        )
        self.no_model_text.setWordWrap(True)
        self.add_model_button = QPushButton("Add a model…", self.no_model)
        self.add_model_button.clicked.connect(self.add_model)
        nm.addWidget(self.no_model_text, 1)
        nm.addWidget(self.add_model_button)
        self.no_model.hide()
        layout.addWidget(self.no_model)

        # A tool call that asks the user first (writing a file, swapping the model, …).
        self.approval = QFrame(frame)
        self.approval.setObjectName("EmptyState")
        ap = QHBoxLayout(self.approval)
        self.approval_text = QLabel("", self.approval)
        self.approval_text.setWordWrap(True)
        ap.addWidget(self.approval_text, 1)
        self.approve_once = QPushButton("Allow once", self.approval)
        self.approve_always = QPushButton("Always allow", self.approval)
        self.approve_deny = QPushButton("Deny", self.approval)
        for button, answer in ((self.approve_once, "once"), (self.approve_always, "always"),
                               (self.approve_deny, "deny")):
            button.clicked.connect(lambda _=False, a=answer: self.answer_approval(a))
            ap.addWidget(button)
        self.approval.hide()
        layout.addWidget(self.approval)
        self._approval_id: int | None = None

        bar = QHBoxLayout()
        self.model = QComboBox(frame)
        self.model.setAccessibleName("Model")
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.model.activated.connect(self._model_chosen)
        self.status = QLabel("Enter to ask · Esc to close", frame)
        self.status.setObjectName("Muted")
        self.copy_button = QPushButton("Copy answer", frame)
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy_answer)
        bar.addWidget(self.model)
        bar.addWidget(self.status, 1)
        bar.addWidget(self.copy_button)
        layout.addLayout(bar)
        QShortcut(QKeySequence("Ctrl+Shift+C"), self, activated=self.copy_answer)

        self.text = ""
        self._round_text = ""  # this round's text (the answer so far also shows tool use)
        self._calls = ToolCallAssembler()
        self._answered_by = ""
        self._task: asyncio.Task[Any] | None = None
        self._client: Any = None
        self._last_render = 0.0
        # The picker names the socket's model: it follows swaps (tray, window, automatic) and
        # models coming and going, also while the popup is open.
        runtime.bridge.socketChanged.connect(self.fill_models)
        runtime.bridge.modelsChanged.connect(self.fill_models)
        runtime.currentModelChanged.connect(self.fill_models)
        runtime.ready.connect(self.fill_models)

    # -- showing --------------------------------------------------------------------------------
    def open(self) -> None:
        """Show centred on the screen under the mouse, focused and ready to type."""
        self.fill_models()
        screen = QGuiApplication.screenAt(self.cursor().pos()) or QGuiApplication.primaryScreen()
        if screen is not None:
            geo = screen.availableGeometry()
            self.move(geo.center().x() - self.width() // 2, geo.top() + geo.height() // 4)
        self.show()
        self.raise_()
        self.activateWindow()
        self.input.setFocus()
        self.input.selectAll()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.close_popup()
            return
        super().keyPressEvent(event)

    def close_popup(self) -> None:
        self.stop()
        self.hide()

    def fill_models(self, *_: object) -> None:
        choice = self.runtime.prefs.popup_model
        models = self.runtime.models()
        current = self.runtime.current_model_id()
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(f"default ({model_label_for(current, models) or 'no model'})", "default")
        self.model.setItemData(0, f"The model in the default socket: {current or 'none yet'}",
                               Qt.ItemDataRole.ToolTipRole)
        for spec in sorted(models, key=lambda m: (not m.local, m.id)):
            self.model.addItem(model_label(spec), spec.id)
            self.model.setItemData(self.model.count() - 1, spec.id, Qt.ItemDataRole.ToolTipRole)
        i = self.model.findData(choice)
        self.model.setCurrentIndex(max(i, 0))
        self.model.blockSignals(False)
        self._show_no_model(not models and self.runtime.started)

    def _show_no_model(self, none: bool) -> None:
        self.no_model.setVisible(none)
        self.model.setEnabled(not none)
        self.input.setPlaceholderText("Add a model first…" if none else "Ask anything…")
        if none:
            self.answer.hide()

    def add_model(self) -> None:
        """Show the window's Marketplace (providers, downloads) and get out of its way."""
        self.close_popup()
        self.runtime.bridge.openViewRequested.emit("Marketplace")

    def _model_chosen(self, _index: int) -> None:
        self.runtime.prefs.popup_model = self.model.currentData() or "default"
        self.runtime.save_prefs()

    # -- asking ---------------------------------------------------------------------------------
    def ask(self) -> asyncio.Task[Any] | None:
        question = self.input.text().strip()
        if not question:
            return None
        if self.runtime.started and not self.runtime.models():
            self._show_no_model(True)
            self.status.setText("No model yet")
            return None
        self.stop()
        self.text = ""
        self.answer.clear()
        self.answer.show()
        self.resize(self.width(), 420)
        self.copy_button.setEnabled(False)
        self.status.setText("Thinking…")
        self._task = spawn(self._ask(question), on_error=self._failed, name="assistant")
        return self._task

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _ask(self, question: str) -> None:
        url = self.runtime.gateway_url
        if url is None:
            raise PopupError(f"the local gateway is not running ({self.runtime.gateway_error or 'stopped'})")
        model = self.model.currentData() or "default"
        messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
        tools = self._tools()
        client = self._http()
        started = time.perf_counter()
        self._answered_by = ""
        for round_ in range(MAX_ROUNDS + 1):
            body: dict[str, Any] = {
                "model": model,
                "stream": True,
                "messages": messages,
                "stream_options": {"include_usage": True},
            }
            if tools is not None and round_ < MAX_ROUNDS:  # the last round must answer in words
                body["tools"] = tools.schemas()
            self._calls = ToolCallAssembler()
            self._round_text = ""
            await self._stream_round(client, url, body)
            calls = self._calls.calls()
            if tools is None or not calls:
                break
            messages.append({"role": "assistant", "content": self._round_text or None, "tool_calls": calls})
            names = ", ".join(str((c.get("function") or {}).get("name")) for c in calls)
            self.status.setText(f"Using {names}…")
            runs = await tools.run(self._app_id(), calls, on_approval=self._approval_wait)
            self._hide_approval()
            for run in runs:
                messages.append(run.message)
                self.text += f"\n\n*{_TOOL_STATUS.get(run.status, run.status).format(tool=run.name)}*\n\n"
            self._render(force=True)
            self.status.setText("Thinking…")
        self._render(force=True)
        self.copy_button.setEnabled(bool(self.text))
        self.status.setText(f"{self.answered_by_label(model)} · {time.perf_counter() - started:.1f} s")
        self.answerFinished.emit(self.text)

    async def _stream_round(self, client: Any, url: str, body: dict[str, Any]) -> None:
        async with client.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=self._auth_headers()
        ) as r:
            if r.status_code >= 400:
                raw = await r.aread()
                raise PopupError(_error_text(raw, r.status_code))
            # aclosing: leaving the loop early closes the byte stream now, on this loop, not in GC.
            lines = contextlib.aclosing(r.aiter_lines())
            async with lines as stream:
                async for line in stream:
                    if not self._take(line):
                        break

    # -- tools ------------------------------------------------------------------------------------
    def _tools(self) -> Any:
        """The kernel's assistant tools (None with a kernel that has none, e.g. a test double)."""
        try:
            return self.runtime.kernel.assistant_tools
        except (AttributeError, ByenatosError):
            return None

    def _app_id(self) -> str:
        apps = self.runtime.kernel.apps
        token = self.app_token()
        identity = apps.authenticate(token) if token else None
        return identity.id if identity is not None else "assistant"

    def _approval_wait(self, waiting: bool, approval_id: int | None) -> None:
        """Told by the tool invoker while a call waits for the user's answer."""
        if not waiting or approval_id is None:
            self._hide_approval()
            return
        self._approval_id = approval_id
        try:
            request = self.runtime.kernel.tool_invoker.approvals.get(approval_id)
        except ByenatosError:
            request = {}
        tool = request.get("tool") or "a tool"
        self.approval_text.setText(f"The assistant wants to use {tool}. Allow it?")
        self.approval.show()
        self.status.setText(f"Waiting for your answer about {tool}")
        self.resize(self.width(), max(self.height(), 460))

    def answer_approval(self, answer: str) -> None:
        if self._approval_id is None:
            return
        approval_id, self._approval_id = self._approval_id, None
        try:
            self.runtime.kernel.tool_invoker.approvals.answer(approval_id, answer)
        except ByenatosError as e:  # answered elsewhere already (the CLI, the API), or expired
            self.status.setText(in_words(str(e)))
        self._hide_approval()

    def _hide_approval(self) -> None:
        self._approval_id = None
        self.approval.hide()

    def _take(self, line: str) -> bool:
        """One server-sent-event line; False at the end of the stream."""
        if not line.startswith("data:"):
            return True
        data = line[5:].strip()
        if data == "[DONE]":
            return False
        chunk = json.loads(data)
        if "error" in chunk:
            raise PopupError(_error_text(data.encode(), 502))
        self._answered_by = chunk.get("model") or self._answered_by
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            piece = delta.get("content")
            if piece:
                self.text += piece
                self._round_text += piece
                self._render()
            if delta.get("tool_calls"):
                self._calls.add(delta["tool_calls"])
        return True

    def answered_by_label(self, asked: str) -> str:
        """Who answered, with the provider: the answer's `model` field names it as the upstream
        does (a bare name), so it is matched against what was asked for."""
        models = self.runtime.all_models()
        wanted = self.runtime.current_model_id() if asked == "default" else asked
        if self._answered_by:
            spec = spec_for_name(self._answered_by, models, prefer=wanted)
            if spec is not None:
                return model_label(spec)
            return self._answered_by
        return model_label_for(wanted, models) or asked

    def _render(self, force: bool = False) -> None:
        now = time.perf_counter()
        if force or now - self._last_render >= RENDER_EVERY:
            self._last_render = now
            self.answer.setMarkdown(self.text)
            self.answer.verticalScrollBar().setValue(self.answer.verticalScrollBar().maximum())

    def _failed(self, text: str) -> None:
        self.status.setText("Could not answer")
        if self.runtime.started and not self.runtime.models():
            self._show_no_model(True)
        self.answer.show()
        # `byenatos …` in a kernel message reads as code, not as raw backticks.
        words = html.escape(f"Sorry — {in_words(text)}")
        self.answer.setHtml(re.sub(r"`([^`]+)`", r"<code>\1</code>", words))
        self.failed.emit(text)

    def copy_answer(self) -> None:
        if self.text:
            QGuiApplication.clipboard().setText(self.text)
            self.status.setText("Answer copied")

    # -- HTTP and the app token -------------------------------------------------------------------
    def _http(self) -> Any:
        if self._client is None:
            import httpx  # lazy: only when the popup first asks

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=5.0))
        return self._client

    def _auth_headers(self) -> dict[str, str]:
        token = self.app_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def app_token(self) -> str | None:
        """The popup's own app token (scope `chat`), registered once and kept in the keyring."""
        apps = getattr(self.runtime.kernel, "apps", None)
        if apps is None or not hasattr(apps, "register"):
            return None
        secrets = self.runtime.kernel.secrets
        token = secrets.get(TOKEN_SECRET)
        if token and apps.authenticate(token) is not None:
            return token
        _info, token = apps.register(APP_NAME, ["chat"], replace=True)
        secrets.set(TOKEN_SECRET, token)
        return token

    async def aclose(self) -> None:
        self.stop()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _error_text(raw: bytes, status: int) -> str:
    try:
        err = json.loads(raw).get("error") or {}
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")[:300]
    return in_words(message) or f"the gateway answered {status}"
